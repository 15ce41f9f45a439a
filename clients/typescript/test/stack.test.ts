// A user's journey through the real stack (Casdoor, sidecar, plugin, memory service,
// nginx), as an editor extension makes it with this client. The steps share state and run
// in order.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  DEVICE_LOGIN_OFF,
  deviceLogin,
  orgCliClientId,
  HanzoClient,
  HanzoError,
  LoginError,
  mintDeviceKey,
  parseJsonl,
  parseKeyId,
  signOut,
  type DeviceAuthorization,
  type MintedKey,
  type TokenResponse,
} from "../src/index.js";
import { signIn, SKIP, sleep, stackFromEnv, unique, type Stack } from "./support.js";

/** the gateway caches a positive key answer for at most 5 s; poll well past that */
const REVOCATION_DEADLINE_MS = 20_000;

async function refusedWithin(call: () => Promise<unknown>, deadlineMs: number): Promise<HanzoError> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      await call();
    } catch (error) {
      if (error instanceof HanzoError && error.status === 401) return error;
      throw error;
    }
    assert.ok(Date.now() < deadline, `still accepted after ${deadlineMs} ms`);
    await sleep(250);
  }
}

describe("the TypeScript client against the running stack", { skip: SKIP }, () => {
  const stack = stackFromEnv() as Stack;
  const namespace = unique("ts-e2e");
  let aliceTokens: TokenResponse;
  let alice: MintedKey;
  let aliceClient: HanzoClient;
  let secretId: string;
  let carol: MintedKey;
  let carolToken: string;

  it("signs in with PKCE through a loopback redirect at the real Casdoor", async () => {
    aliceTokens = await signIn(stack, stack.org, "alice", "ACME_ALICE_PASSWORD");
    assert.equal(aliceTokens.access_token.split(".").length, 3); // a JWT
    assert.match(aliceTokens.token_type, /^bearer$/i);
  });

  it("mints a device key with the access token", async () => {
    alice = await mintDeviceKey(stack.gateway, aliceTokens.access_token, {
      name: unique("device"),
      scopes: ["memory:read", "memory:write", "memory:delete"],
    });
    assert.match(alice.key, /^hk-/);
    assert.equal(parseKeyId(alice.key), alice.record.key_id);
    assert.equal(alice.record.owner, `${stack.org}/alice`);
    assert.equal(alice.record.organization, stack.org);
    assert.deepEqual(alice.record.scopes, ["memory:delete", "memory:read", "memory:write"]);
    assert.equal(alice.record.state, "active");
    aliceClient = new HanzoClient({ gatewayUrl: stack.gateway, apiKey: alice.key });
    const keys = await aliceClient.listKeys();
    assert.ok(keys.some((k) => k.key_id === alice.record.key_id));
    assert.ok(keys.every((k) => !("key" in k)), "a listing never shows a key");
  });

  it("stores one and a batch, searches and gets", async () => {
    const fact = `acme launch code ${unique("lc")}`;
    const stored = await aliceClient.store(fact, { namespace, tags: ["launch"], metadata: { source: "ts" } });
    assert.equal(stored.status, "created");
    secretId = stored.id;
    const batch = await aliceClient.storeMany([
      { content: "the office plant needs water on Fridays", namespace },
      { content: "standup moved to 9:30", namespace, tags: ["calendar"] },
      { content: fact, namespace }, // the same content in the same scope is stored once
    ]);
    assert.equal(batch.ids.length, 3);
    assert.deepEqual(
      batch.results.map((r) => r.status),
      ["created", "created", "duplicate"],
    );
    assert.equal(batch.ids[2], secretId);

    const hits = await aliceClient.search("launch code", { mode: "keyword", top_k: 5, filters: { namespace } });
    assert.equal(hits[0]?.memory.id, secretId);
    assert.ok((hits[0]?.score ?? 0) > 0);
    const tagged = await aliceClient.search("standup", { filters: { namespace, tags: ["calendar"] } });
    assert.deepEqual(
      tagged.map((h) => h.memory.content),
      ["standup moved to 9:30"],
    );
    const memory = await aliceClient.get(secretId);
    assert.equal(memory.content, fact);
    assert.deepEqual(memory.tags, ["launch"]);
    assert.deepEqual(memory.metadata, { source: "ts" });
    assert.equal(memory.user, "alice");
  });

  it("lists page by page with the cursor", async () => {
    const first = await aliceClient.list({ namespace, limit: 2 });
    assert.equal(first.memories.length, 2);
    assert.ok(first.next_cursor);
    const second = await aliceClient.list({ namespace, limit: 2, cursor: first.next_cursor });
    assert.equal(second.memories.length, 1);
    assert.equal(second.next_cursor, null);
    const all = [];
    for await (const memory of aliceClient.listAll({ namespace, limit: 1 })) all.push(memory.id);
    assert.deepEqual(all, [...first.memories, ...second.memories].map((m) => m.id));
    const launch = await aliceClient.list({ namespace, tags: ["launch"] });
    assert.deepEqual(
      launch.memories.map((m) => m.id),
      [secretId],
    );
  });

  it("updates and deletes", async () => {
    const { id } = await aliceClient.store("draft: ship on Tuesday", { namespace });
    const updated = await aliceClient.update(id, { content: "final: ship on Wednesday", tags: ["ship"] });
    assert.equal(updated.content, "final: ship on Wednesday");
    assert.deepEqual((await aliceClient.get(id)).tags, ["ship"]);
    assert.deepEqual(await aliceClient.delete(id), { id, deleted: true });
    await assert.rejects(aliceClient.get(id), { name: "HanzoError", status: 404, code: "not_found" });
    const after = await aliceClient.search("ship Wednesday", { mode: "keyword", filters: { namespace } });
    assert.ok(after.every((h) => h.memory.id !== id));
  });

  it("exports JSON lines and imports them back without duplicating", async () => {
    const text = await aliceClient.exportJsonl();
    const lines = parseJsonl(text).filter((line) => line.namespace === namespace);
    assert.equal(lines.length, 3);
    assert.ok(lines.some((line) => line.id === secretId));
    const result = await aliceClient.importJsonl(lines);
    assert.equal(result.created, 0);
    assert.equal(result.created + result.updated + result.duplicate, 3);
    assert.equal((await aliceClient.list({ namespace })).memories.length, 3);
  });

  it("reads the capabilities and its own usage", async () => {
    const caps = await aliceClient.capabilities();
    assert.deepEqual([...caps.search_modes].sort(), ["hybrid", "keyword", "vector"]);
    assert.ok(caps.features.includes("cursor_pagination"));
    assert.ok((caps.limits.max_batch ?? 0) > 0);
    const usage = await aliceClient.usage();
    assert.ok(Array.isArray(usage));
    for (const row of usage) assert.equal(row.organization, stack.org);
  });

  it("another tenant's memory id answers 404", async () => {
    const tokens = await signIn(stack, stack.otherOrg, "carol", "GLOBEX_CAROL_PASSWORD");
    carolToken = tokens.access_token;
    carol = await mintDeviceKey(stack.gateway, tokens.access_token, {
      name: unique("carol-device"),
      scopes: ["memory:read", "memory:write"],
    });
    assert.equal(carol.record.owner, `${stack.otherOrg}/carol`);
    const client = new HanzoClient({ gatewayUrl: stack.gateway, apiKey: carol.key });
    await assert.rejects(client.get(secretId), { status: 404, code: "not_found" });
    await assert.rejects(client.update(secretId, { content: "mine now" }), { status: 404, code: "not_found" });
    const found = await client.search("acme launch code", { mode: "keyword", top_k: 20 });
    assert.ok(found.every((h) => h.memory.id !== secretId));
    assert.equal((await client.list({ namespace })).memories.length, 0);
    // and alice still has it, unchanged
    assert.match((await aliceClient.get(secretId)).content, /^acme launch code /);
  });

  it("refuses a key wider than its creator (403 scope_escalation)", async () => {
    // a key without keys:manage mints nothing at all
    const byKey = new HanzoClient({ gatewayUrl: stack.gateway, apiKey: carol.key });
    await assert.rejects(byKey.createKey({ name: "narrow", scopes: ["memory:read"] }), {
      status: 403,
      code: "keys_manage_required",
    });
    // signed in, carol still gets no scope her roles do not grant
    const client = new HanzoClient({ gatewayUrl: stack.gateway, accessToken: carolToken });
    const refused = await client.createKey({ name: "wider", scopes: ["memory:delete"] }).then(
      () => assert.fail("a wider key was minted"),
      (error: unknown) => error,
    );
    assert.ok(refused instanceof HanzoError);
    assert.equal(refused.status, 403);
    assert.equal(refused.code, "scope_escalation");
    assert.deepEqual((refused.details as { excess_scopes: string[] }).excess_scopes, ["memory:delete"]);
  });

  it("errors are typed, with the code, details and a request id", async () => {
    const invalid = await aliceClient.store({ content: "x", importance: 7 }).then(
      () => assert.fail("stored an invalid memory"),
      (error: unknown) => error,
    );
    assert.ok(invalid instanceof HanzoError);
    assert.equal(invalid.status, 422);
    assert.equal(invalid.code, "validation_error");
    assert.ok(Array.isArray(invalid.details) && invalid.details.length > 0);
    assert.match(invalid.requestId ?? "", /^[0-9a-f-]{16,}$/i);
    assert.match(invalid.message, /^HTTP 422 validation_error: /);

    const forged = new HanzoClient({ gatewayUrl: stack.gateway, apiKey: `hk-AAAAAAAAAAAA_${"A".repeat(43)}` });
    await assert.rejects(forged.capabilities(), (error: unknown) => {
      assert.ok(error instanceof HanzoError);
      assert.equal(error.status, 401);
      assert.ok(error.code && error.code !== "http_error", error.code);
      assert.ok(error.requestId);
      return true;
    });
  });

  it("rotates a key: the new secret works under the same key id", async () => {
    // creating and rotating keys takes the signed-in user (a device key lacks keys:manage)
    const signedIn = new HanzoClient({ gatewayUrl: stack.gateway, accessToken: aliceTokens.access_token });
    const spare = await signedIn.createKey({ name: unique("spare"), scopes: ["memory:read"] });
    assert.deepEqual(spare.record.scopes, ["memory:read"]);
    const rotated = await signedIn.rotateKey(spare.record.key_id, { grace_seconds: 0 });
    assert.equal(rotated.record.key_id, spare.record.key_id);
    assert.notEqual(rotated.key, spare.key);
    const client = new HanzoClient({ gatewayUrl: stack.gateway, apiKey: rotated.key });
    assert.equal((await client.getKey(spare.record.key_id)).key_id, spare.record.key_id);
    assert.equal((await aliceClient.revokeKey(spare.record.key_id)).state, "revoked");
  });

  it("signs in with the device-code grant (approved through Casdoor's API)", async () => {
    const shown: DeviceAuthorization[] = [];
    const tokens = await deviceLogin({
      casdoorUrl: stack.casdoor,
      organization: stack.org,
      timeoutMs: 60_000,
      // what the user does on another device: sign in and enter the user code
      onUserCode: async (start) => {
        shown.push(start);
        const reply = await fetch(`${stack.casdoor}/api/login`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            application: orgCliClientId(stack.org),
            organization: stack.org,
            username: "bob",
            password: stack.password("ACME_BOB_PASSWORD"),
            type: "device",
            userCode: start.user_code,
          }),
        }).then((r) => r.json() as Promise<{ status: string; msg?: string }>);
        assert.equal(reply.status, "ok", reply.msg);
      },
    });
    assert.equal(shown.length, 1);
    assert.ok(shown[0]?.user_code && shown[0]?.verification_uri);
    const bob = await mintDeviceKey(stack.gateway, tokens.access_token, { name: unique("bob"), scopes: ["memory:read"] });
    assert.equal(bob.record.owner, `${stack.org}/bob`);
    // bob is a reader: his sign-in cannot mint a writer's key
    await assert.rejects(
      mintDeviceKey(stack.gateway, tokens.access_token, { name: unique("bob-w"), scopes: ["memory:write"] }),
      { status: 403, code: "scope_escalation" },
    );
    assert.ok(await signOut(stack.gateway, bob.key));
  });

  it("says that device sign-in is off for a tenant that leaves it off", async () => {
    await assert.rejects(
      deviceLogin({ casdoorUrl: stack.casdoor, organization: stack.otherOrg, timeoutMs: 10_000, onUserCode: () => {} }),
      (error: unknown) => {
        assert.ok(error instanceof LoginError);
        assert.equal(error.code, DEVICE_LOGIN_OFF);
        assert.match(error.message, new RegExp(`not on for the organization ${stack.otherOrg}`));
        assert.match(error.message, /`device_login: true`/);
        return true;
      },
    );
  });

  it("signs out: the key revokes itself and is refused within the bound", async () => {
    const revoked = await signOut(stack.gateway, alice.key);
    assert.equal(revoked?.key_id, alice.record.key_id);
    assert.equal(revoked?.state, "revoked");
    const refused = await refusedWithin(() => aliceClient.search("launch"), REVOCATION_DEADLINE_MS);
    assert.ok(refused.code);
    // signing out again is harmless: the key is already refused
    assert.equal(await signOut(stack.gateway, alice.key), undefined);
  });
});
