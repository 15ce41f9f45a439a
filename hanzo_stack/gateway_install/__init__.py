"""``hanzo gateway install``: one renderer from the route table to each gateway's config.

The route table (``deploy/stack/routes.yaml`` or any other) says which paths exist and,
through each route's ``audience``, which upstream receives them; the install settings say
where the forward-auth service and each upstream listen. Every gateway's configuration is
rendered from those two, with the files in ``deploy/`` as the templates, so the committed
configs and an installed one cannot drift.
"""
