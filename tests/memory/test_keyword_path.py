"""SQLite keyword search ranks the words' postings, not the tenant's: still one tenant's rows.

Ranking without the tenant token in the FTS5 MATCH makes keyword search independent of the
tenant's size; these tests pin that the tenant is still enforced (by the join), that a
tenant whose rows rank below another tenant's still gets them, and that the fallback for
words common across tenants (the tenant token back in the MATCH) answers the same.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from memory_service.backends import sqlite
from memory_service.backends.base import NEVER, Query, Record
from memory_service.backends.sqlite import SqliteBackend


def record(tenant: str, i: int, content: str) -> Record:
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0
    return Record(
        tenant=tenant, id=f"{tenant}-{i}", user="u", namespace="default", content=content,
        content_hash=f"h{i}", metadata={}, tags=[], importance=0.5, created_at=1000 + i,
        updated_at=1000 + i, expires_at=NEVER, vector=v,
    )  # fmt: skip


@pytest.fixture
async def db(tmp_path):
    backend = SqliteBackend(tmp_path / "kw.sqlite3", 8)
    await backend.open()
    # "big" ranks far above "small" for "cobalt": short rows, the word repeated
    await backend.upsert([record("big", i, f"cobalt cobalt cobalt {i}") for i in range(300)])
    await backend.upsert(
        [record("small", i, f"a long row about many things and cobalt once {i}") for i in range(3)]
    )
    yield backend
    await backend.close()


@pytest.mark.parametrize("words_only_max", [sqlite.WORDS_ONLY_MAX, 0])
async def test_a_tenant_gets_its_rows_ranked_below_another_tenants(db, monkeypatch, words_only_max):
    monkeypatch.setattr(sqlite, "WORDS_ONLY_MAX", words_only_max)
    q = Query(tenant="small", user="u", now=2000)
    hits = await db.keyword_search(q, "cobalt", 10)
    assert sorted(r.id for r, _ in hits) == ["small-0", "small-1", "small-2"]
    big = await db.keyword_search(Query(tenant="big", user="u", now=2000), "cobalt", 10)
    assert len(big) == 10 and all(r.tenant == "big" for r, _ in big)
    assert [s for _, s in big] == sorted((s for _, s in big), reverse=True)
    assert await db.keyword_search(Query(tenant="none", user="u", now=2000), "cobalt", 10) == []


async def test_both_paths_rank_alike(db, monkeypatch):
    q = Query(tenant="big", user="u", now=2000)
    words_only = [r.id for r, _ in await db.keyword_search(q, "cobalt 7", 5)]
    monkeypatch.setattr(sqlite, "WORDS_ONLY_MAX", 0)
    tenant_path = [r.id for r, _ in await db.keyword_search(q, "cobalt 7", 5)]
    assert words_only[0] == tenant_path[0] == "big-7"
    assert await db.keyword_search(q, "absent", 5) == []


@pytest.fixture
async def zipf_db(tmp_path):
    """600 rows of 1 to 30 words drawn from a skewed vocabulary: common words match most
    rows, row lengths vary widely (so a row of common words alone can outrank rare ones)."""
    backend = SqliteBackend(tmp_path / "zipf.sqlite3", 8)
    await backend.open()
    rng = np.random.default_rng(7)
    rows = []
    for i in range(600):
        words = rng.zipf(1.4, size=int(rng.integers(1, 31))) % 60
        rows.append(record("z", i, " ".join(f"w{w}" for w in words)))
    await backend.upsert(rows)
    yield backend
    await backend.close()


async def test_narrowed_plans_rank_exactly_as_the_whole_query(zipf_db, monkeypatch):
    """Past the budget, ranking the rare words' rows (or rows with every word) and proving
    the k-th beats any other row's bound gives bm25's own top k, or hands on."""
    q = Query(tenant="z", user="u", now=2000)
    queries = [f"w{a} w{b}" for a in range(0, 12) for b in range(a + 1, 40, 3)]
    queries += ["w0 w1 w2", "w1 w2 w3 w30", "w0", "w5 w55"]
    complete = {}
    for text in queries:
        complete[text] = [(r.id, s) for r, s in await zipf_db.keyword_search(q, text, 10)]
    used: list[tuple[int, bool]] = []
    ranked = SqliteBackend._ranked

    async def spy(self, plan, *args):
        found = await ranked(self, plan, *args)
        if plan.outside is not None:
            used.append((len(plan.matches), found is not None))
        return found

    monkeypatch.setattr(SqliteBackend, "_ranked", spy)
    monkeypatch.setattr(sqlite, "RANK_BUDGET", 40)
    monkeypatch.setattr(sqlite, "WALK", False)  # the FTS5 plans alone (the walk: below)
    for text in queries:
        narrowed = [(r.id, s) for r, s in await zipf_db.keyword_search(q, text, 10)]
        assert [i for i, _ in narrowed] == [i for i, _ in complete[text]], text
        assert [s for _, s in narrowed] == pytest.approx([s for _, s in complete[text]])
    # every outcome happened: the rare words' plan (two MATCHes) and the every-word plan
    # (one) each proved an answer, and some narrowed plan could not
    assert {(1, True), (2, True)} <= set(used), used
    assert any(not proved for _, proved in used), used


async def test_each_words_bound_holds_and_is_tight(zipf_db):
    """memories_terms bounds what a word can add to any row's score (the narrowed plans'
    proof rests on it): at least the best row's own bm25 score for that word alone, and
    within a tenth of it (idf x (k1 + 1), the bound before, is half as high again
    here, twice in the benchmark's corpus)."""
    q = Query(tenant="z", user="u", now=2000)
    await zipf_db.maintain()  # folds the written rows into memories_terms
    counts = await zipf_db._counts([f"w{i}" for i in range(60)])
    df, stats = counts.df, counts.stats
    words = [w for w in df if df[w]]
    weights = sqlite._weights(words, counts)
    for w in words:
        best = (await zipf_db.keyword_search(q, w, 1))[0][1]
        assert best <= weights[w].bound < 1.1 * best, w
    loose = sum(sqlite.loose_bound(df[w], stats) for w in words)
    assert loose > 1.4 * sum(weights[w].bound for w in words)


async def _complete_and_walked(backend, monkeypatch, q, queries, k=10):
    """Each query's answer from bm25() over every matching row (ties by rid), and from
    the walk over memories_postings; and whether each walk proved (None: handed on)."""
    complete = {}
    with monkeypatch.context() as m:
        m.setattr(sqlite, "RANK_BUDGET", 10**12)
        for text in queries:
            complete[text] = [(r.id, s) for r, s in await backend.keyword_search(q, text, k)]
    outcomes: list[tuple[bool, bool]] = []  # (rows holding every word read first, proved)
    top = sqlite._Walk.top

    def spy(self, *args):
        found = top(self, *args)
        outcomes.append((args[-1] is not None, found is not None))
        return found

    monkeypatch.setattr(sqlite._Walk, "top", spy)
    monkeypatch.setattr(sqlite, "RANK_BUDGET", 0)
    walked = {}
    for text in queries:
        walked[text] = [(r.id, s) for r, s in await backend.keyword_search(q, text, k)]
    return complete, walked, outcomes


_QUERIES = [f"w{a} w{b}" for a in range(0, 12) for b in range(a + 1, 40, 3)]
_QUERIES += ["w0 w1 w2", "w1 w2 w3 w30", "w0", "w1", "w3", "w5 w55", "w2 w2", "w59"]


async def test_the_walk_ranks_exactly_as_the_whole_query(zipf_db, monkeypatch):
    """The walk over memories_postings returns bm25's own top k, scores to the bit and
    ties in rid order (single words tie in whole levels here: rows of one length); it
    proves with and without the rows holding every word read first, and hands on past its
    budget."""
    q = Query(tenant="z", user="u", now=2000)
    monkeypatch.setattr(sqlite, "EVERY_MAX", 30)
    complete, walked, outcomes = await _complete_and_walked(zipf_db, monkeypatch, q, _QUERIES)
    for text in _QUERIES:
        assert walked[text] == complete[text], text
    assert {(True, True), (False, True)} <= set(outcomes), outcomes
    ties = [a for a in complete.values() if len({s for _, s in a}) < len(a)]
    assert len(ties) > 10  # ties decided by rid, alike in both
    # rows holding every word, more than are ranked first (4k + 32): the rest are bounded
    monkeypatch.setattr(sqlite, "EVERY_MAX", 10**9)
    late = Query(tenant="z", user="u", now=2000, created_after=1450)  # the last 149 rows
    for query, k in [(q, 1), (q, 3), (late, 3), (late, 10)]:
        whole, walked, _ = await _complete_and_walked(zipf_db, monkeypatch, query, _QUERIES, k)
        assert walked == whole, (query, k)
    monkeypatch.setattr(sqlite, "WALK_BUDGET", 5)
    _, walked, outcomes = await _complete_and_walked(zipf_db, monkeypatch, q, _QUERIES)
    assert any(not proved for _, proved in outcomes)
    assert all(walked[text] == complete[text] for text in _QUERIES)


async def test_the_walk_skips_deleted_expired_filtered_and_sees_new_rows(zipf_db, monkeypatch):
    """Rows deleted, changed, expired, another user's or tenant's, or written since the
    last fold: the walk answers as the whole query does."""
    rng = np.random.default_rng(11)
    await zipf_db.keyword_search(Query(tenant="z", user="u", now=2000), "w1", 1)  # folded
    await zipf_db.delete("z", [f"z-{i}" for i in range(0, 600, 7)])
    changed = [record("z", i, "quartz w1") for i in range(1, 600, 50)]
    other = []
    for i in range(600, 760):
        words = " ".join(f"w{w}" for w in rng.zipf(1.4, size=int(rng.integers(1, 12))) % 60)
        rec = record("z", i, words)
        if i % 4 == 0:
            rec = replace(rec, expires_at=1500)
        elif i % 4 == 1:
            rec = replace(rec, user="v")
        elif i % 4 == 2:
            rec = replace(rec, tenant="y", id=f"y-{i}")
        other.append(rec)
    await zipf_db.upsert(changed + other)  # not folded yet: the next search folds them
    q = Query(tenant="z", user="u", now=2000)
    queries = [*_QUERIES, "quartz", "quartz w1"]
    complete, walked, outcomes = await _complete_and_walked(zipf_db, monkeypatch, q, queries)
    for text in queries:
        assert walked[text] == complete[text], text
    assert any(proved for _, proved in outcomes)
    # all tie: the first ten by rid (z-301 was deleted and written again: a later rid)
    first = [f"z-{i}" for i in range(1, 600, 50) if i != 301][:10]
    assert [i for i, _ in complete["quartz"]] == first
    answered = {i for a in complete.values() for i, _ in a}
    gone = {f"z-{i}" for i in range(0, 600, 7) if i % 50 != 1}  # deleted, not written again
    hidden = gone | {f"z-{i}" for i in range(600, 760) if i % 4 < 2}
    assert not answered & hidden and not any(i.startswith("y-") for i in answered)
    assert {f"z-{i}" for i in range(603, 760, 4)} & answered  # written since the fold
    q = Query(tenant="z", user="u", now=2000, namespace="none")
    complete, walked, _ = await _complete_and_walked(zipf_db, monkeypatch, q, _QUERIES[:5])
    assert walked == complete and not any(complete.values())


def _postings_table(path) -> list[tuple[str, int, int, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM memories_postings ORDER BY 1, 2, 3, 4").fetchall()


def _terms_table(path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT term, tf, dl FROM memories_terms ORDER BY 1, 2").fetchall()


async def test_terms_written_with_rows_match_the_index_and_an_old_file_is_upgraded(tmp_path):
    """memories_terms kept for written rows (folded in by maintenance or the next keyword
    search) equals what the index itself says (the migration's source): FTS5's tokenizer
    (porter, folding) in both. A file from before the table existed (user_version 0) gets
    it at open."""
    path = tmp_path / "old.sqlite3"
    backend = SqliteBackend(path, 8)
    await backend.open()
    texts = ["Running runs ran", "café CAFE cafe", "a b a b a", "x-ray x ray", "solo"]
    await backend.upsert([record("t", i, c) for i, c in enumerate(texts)])
    await backend.maintain()
    # content changed; and a longer row holding "solo" once, as "solo" alone did
    await backend.upsert([record("t", 1, "cafe again and again"), record("t", 5, "solo too")])
    # not folded yet: the next keyword search folds them in before it plans
    assert await backend.keyword_search(Query(tenant="t", user="u", now=2000), "too", 5)
    await backend.close()
    written = _terms_table(path)
    postings = _postings_table(path)
    assert ("cafe", 1, 5, 2) in postings and ("solo", 1, 3, 6) in postings  # dl: + tenant
    assert not [p for p in postings if p[0] == "cafe" and p[1] == 3]  # changed: gone
    assert ("run", 2, 3) in written and ("cafe", 3, 3) in written and ("a", 3, 5) in written
    assert ("again", 2, 4) in written and ("cafe", 1, 4) in written and ("solo", 1, 1) in written
    with sqlite3.connect(path) as conn:  # as the file was before memories_terms
        conn.execute("DROP TABLE memories_terms")
        conn.execute("DROP TABLE memories_postings")
        conn.execute("PRAGMA user_version = 0")
    backend = SqliteBackend(path, 8)
    await backend.open()
    hits = await backend.keyword_search(Query(tenant="t", user="u", now=2000), "running", 5)
    await backend.close()
    assert [r.id for r, _ in hits] == ["t-0"]
    rebuilt = _terms_table(path)
    # the index forgot the replaced content "café CAFE cafe" (cafe 3 times in 3 tokens);
    # the rows written along the way kept it: a higher bound than needed, never a lower one
    assert set(rebuilt) == set(written) - {("cafe", 3, 3)}
    assert _postings_table(path) == postings  # kept as written = read off the index
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite._VERSION


async def test_erase_leaves_no_erased_word_in_the_term_table(tmp_path):
    backend = SqliteBackend(tmp_path / "erase.sqlite3", 8)
    await backend.open()
    await backend.upsert([record("gone", 0, "zanzibar quokka"), record("kept", 0, "quokka")])
    await backend.erase("gone", None)
    await backend.close()
    terms = {t for t, _, _ in _terms_table(tmp_path / "erase.sqlite3")}
    assert "zanzibar" not in terms and "quokka" in terms
    assert {p[0] for p in _postings_table(tmp_path / "erase.sqlite3")} == {"quokka"}


async def test_a_deleted_rows_postings_go_with_it(tmp_path):
    """memories_postings holds live rows only (a deleted row's entries would be read and
    joined for nothing, forever)."""
    backend = SqliteBackend(tmp_path / "delete.sqlite3", 8)
    await backend.open()
    await backend.upsert([record("t", 0, "zanzibar quokka"), record("t", 1, "quokka")])
    await backend.maintain()
    await backend.delete("t", ["t-0"])
    await backend.close()
    assert _postings_table(tmp_path / "delete.sqlite3") == [("quokka", 1, 2, 2)]


async def test_a_row_changed_before_its_terms_are_folded_in(tmp_path):
    """A store then an update of the same memory, with no keyword search between: the
    row waits in memories_pending once, and its final content is what gets folded in."""
    backend = SqliteBackend(tmp_path / "twice.sqlite3", 8)
    await backend.open()
    await backend.upsert([record("t", 0, "tulips")])
    await backend.upsert([record("t", 0, "roses roses")])
    await backend.upsert([record("t", 0, "roses roses")])  # same content: not pending again
    hits = await backend.keyword_search(Query(tenant="t", user="u", now=2000), "roses", 5)
    await backend.close()
    assert [r.id for r, _ in hits] == ["t-0"]
    assert _terms_table(tmp_path / "twice.sqlite3") == [("rose", 2, 2)]


async def test_rows_holding_every_word_past_those_ranked_first_stay_bounded(tmp_path, monkeypatch):
    """The best rows holding both words are filtered out; one passing row holding both,
    ranked past them, beats a passing row holding one word twice: the walk must not stop
    at the latter (the rows with every word not ranked are bounded by the last ranked)."""
    backend = SqliteBackend(tmp_path / "every.sqlite3", 8)
    await backend.open()
    rows = [record("t", i, "alpha beta") for i in range(100)]  # created 1000..1099
    rows += [record("t", 100 + i, " ".join(f"f{i}x{j}" for j in range(10))) for i in range(500)]
    rows += [record("t", 900, "alpha alpha"), record("t", 901, "alpha beta c d e f")]
    await backend.upsert(rows)
    q = Query(tenant="t", user="u", now=5000, created_after=1800)
    monkeypatch.setattr(sqlite, "RANK_BUDGET", 0)
    hits = await backend.keyword_search(q, "alpha beta", 1)
    await backend.close()
    assert [r.id for r, _ in hits] == ["t-901"]


async def test_a_version_1_file_gets_its_postings_at_open(tmp_path, monkeypatch):
    """A file from session 4 (memories_terms, no memories_postings, user_version 1) is
    upgraded at open: the table read off the index, and the walk answers from it."""
    path = tmp_path / "v1.sqlite3"
    backend = SqliteBackend(path, 8)
    await backend.open()
    await backend.upsert([record("t", i, f"tern {'gull ' * (i % 3)}{i}") for i in range(30)])
    await backend.maintain()
    await backend.close()
    kept = _postings_table(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE memories_postings")
        conn.execute("PRAGMA user_version = 1")
    backend = SqliteBackend(path, 8)
    await backend.open()
    q = Query(tenant="t", user="u", now=2000)
    monkeypatch.setattr(sqlite, "RANK_BUDGET", 0)
    proved = []
    top = sqlite._Walk.top
    monkeypatch.setattr(sqlite._Walk, "top", lambda *a: proved.append(top(*a)) or proved[-1])
    walked = [r.id for r, _ in await backend.keyword_search(q, "gull tern", 5)]
    await backend.close()
    assert proved and proved[0] is not None
    assert _postings_table(path) == kept and len(kept) > 60
    assert walked == ["t-2", "t-5", "t-8", "t-11", "t-14"]  # gull twice, shortest, by rid


async def test_a_words_frequency_is_counted_again_once_the_database_changed(zipf_db, monkeypatch):
    """Frequencies are kept between searches: after rows are written through the service,
    and after rows are deleted by another connection (an operator's sqlite3), the walk
    scores with the new frequency, as bm25() itself does."""
    q = Query(tenant="z", user="u", now=2000)
    queries = ["basalt", "basalt w1", "basalt w3"]
    await zipf_db.upsert([record("z", 1000 + i, f"basalt w{i % 5}") for i in range(5)])
    before, walked, _ = await _complete_and_walked(zipf_db, monkeypatch, q, queries)
    assert walked == before and len(before["basalt"]) == 5
    await zipf_db.upsert([record("z", 2000 + i, f"basalt w{i % 7}") for i in range(40)])
    after, walked, _ = await _complete_and_walked(zipf_db, monkeypatch, q, queries)
    assert walked == after
    assert after["basalt"][0][1] < before["basalt"][0][1]  # commoner now, so worth less
    other = sqlite3.connect(zipf_db.path)
    with other:
        other.execute("DELETE FROM memories WHERE content LIKE 'basalt%' AND created_at > 2000")
    other.close()
    again, walked, _ = await _complete_and_walked(zipf_db, monkeypatch, q, queries)
    assert walked == again
    assert again["basalt"][0][1] > after["basalt"][0][1]  # rare again


@pytest.mark.parametrize("between", [None, "w3"])
async def test_the_first_walk_after_a_write_counts_its_words_afresh(zipf_db, monkeypatch, between):
    """A word's kept frequency is not used once rows were written: not by the first
    search after the write (``between`` None), nor after a search of other words set the
    kept counts to the new version ("w3")."""
    q = Query(tenant="z", user="u", now=2000)
    await zipf_db.upsert([record("z", 1000 + i, f"basalt w{i % 5}") for i in range(5)])
    monkeypatch.setattr(sqlite, "RANK_BUDGET", 0)  # the walk, which scores with the counts
    await zipf_db.keyword_search(q, "basalt", 10)
    await zipf_db.upsert([record("z", 2000 + i, f"basalt w{i % 7}") for i in range(40)])
    if between:
        await zipf_db.keyword_search(q, between, 10)
    walked = [(r.id, s) for r, s in await zipf_db.keyword_search(q, "basalt", 10)]
    monkeypatch.setattr(sqlite, "RANK_BUDGET", 10**12)  # bm25() over every matching row
    complete = [(r.id, s) for r, s in await zipf_db.keyword_search(q, "basalt", 10)]
    assert walked == complete and len(walked) == 10


async def test_a_query_whose_words_overflow_the_kept_words_still_answers(zipf_db, monkeypatch):
    """Words' terms and frequencies are kept up to a bound; a query that adds new words to
    a full store (some of its words kept, others not) answers as one on an empty store."""
    q = Query(tenant="z", user="u", now=2000)
    want = [(r.id, s) for r, s in await zipf_db.keyword_search(q, "w1 w3 w7", 10)]
    monkeypatch.setattr(sqlite, "_TERMS_CACHED", 2)
    await zipf_db.keyword_search(q, "w1", 10)
    got = [(r.id, s) for r, s in await zipf_db.keyword_search(q, "w1 w3 w7", 10)]
    assert got == want and got


async def test_searches_running_together_across_a_write_answer_as_each_alone(zipf_db):
    """Kept frequencies are shared by searches in flight: one that finds the database
    changed must not take from another the kept counts it planned with (a KeyError, a 500,
    that a fault run found under steady stores and searches)."""
    q = Query(tenant="z", user="u", now=2000)
    texts = ["w1", "w1 w3", "w7 w2", "w3 w5 w1", "w9"]
    for text in texts:  # every word's terms and frequency kept
        await zipf_db.keyword_search(q, text, 5)
    other = sqlite3.connect(zipf_db.path)  # a change the service did not make: no fold
    with other:
        other.execute("DELETE FROM memories WHERE id = 'z-5'")
    other.close()
    together = await asyncio.gather(*(zipf_db.keyword_search(q, t, 5) for t in texts * 2))
    alone = [await zipf_db.keyword_search(q, t, 5) for t in texts * 2]
    assert [[(r.id, s) for r, s in hits] for hits in together] == [
        [(r.id, s) for r, s in hits] for hits in alone
    ]
    assert all(together)


async def test_searches_running_together_past_the_kept_words_bound_answer_as_each_alone(
    zipf_db, monkeypatch
):
    """A search in flight keeps the terms it looked up while another empties the full
    store of words (a KeyError before)."""
    q = Query(tenant="z", user="u", now=2000)
    texts = ["w1 w3", "w1 w4", "w1 w5 w2"]
    alone = [await zipf_db.keyword_search(q, t, 5) for t in texts]
    monkeypatch.setattr(sqlite, "_TERMS_CACHED", 3)
    for text in ("w6", "w1 w2 w6"):  # the stores hold these 3: a new word empties them
        await zipf_db.keyword_search(q, text, 5)
    together = await asyncio.gather(*(zipf_db.keyword_search(q, t, 5) for t in texts))
    assert [[(r.id, s) for r, s in hits] for hits in together] == [
        [(r.id, s) for r, s in hits] for hits in alone
    ]
