// Pure functions only: no server is faked here. Everything that talks HTTP is tested
// against the real stack in stack.test.ts.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  base64url,
  DEVICE_LOGIN_OFF,
  deviceLogin,
  errorFromResponse,
  HanzoClient,
  listQuery,
  parseJsonl,
  parseKeyId,
  parseRetryAfter,
  pkcePair,
  s256,
  sharedClientId,
  startPkce,
  toJsonl,
} from "../src/index.js";

test("S256 challenge matches RFC 7636 appendix B", async () => {
  const octets = [
    116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105, 214, 191, 240,
    91, 88, 5, 88, 83, 132, 141, 121,
  ];
  const verifier = base64url(new Uint8Array(octets));
  assert.equal(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
  assert.equal(await s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
});

test("a PKCE verifier is 48 random bytes, base64url, fresh each time", async () => {
  const a = await pkcePair();
  const b = await pkcePair();
  assert.match(a.verifier, /^[A-Za-z0-9_-]{64}$/);
  assert.notEqual(a.verifier, b.verifier);
  assert.equal(a.challenge, await s256(a.verifier));
});

test("the authorize URL carries the shared client id, S256 challenge and state", async () => {
  const session = await startPkce({
    casdoorUrl: "http://127.0.0.1:1/",
    clientId: "cli123",
    organization: "acme",
    redirectUri: "http://127.0.0.1:5555/callback",
  });
  const url = new URL(session.authorizeUrl);
  assert.equal(url.origin + url.pathname, "http://127.0.0.1:1/login/oauth/authorize");
  const q = url.searchParams;
  assert.equal(q.get("client_id"), sharedClientId("cli123", "acme"));
  assert.equal(q.get("client_id"), "cli123-org-acme");
  assert.equal(q.get("response_type"), "code");
  assert.equal(q.get("redirect_uri"), "http://127.0.0.1:5555/callback");
  assert.equal(q.get("scope"), "openid profile");
  assert.equal(q.get("code_challenge_method"), "S256");
  assert.match(q.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
  assert.equal(q.get("state"), session.state);
  // a redirect with another state is refused before any exchange is attempted
  await assert.rejects(session.finish(`/callback?code=x&state=forged`), { name: "LoginError", code: "state_mismatch" });
  await assert.rejects(session.finish(new URLSearchParams({ state: session.state, error: "access_denied" })), {
    code: "access_denied",
  });
});

test("device sign-in off for the tenant is said as such, not as a generic failure", async () => {
  const asked: string[] = [];
  // Casdoor's answer to a device-code request for a client id it does not know: what the
  // tenant's CLI application answers to while the tenant file leaves device_login off
  const fetchOff = async (input: string, init?: RequestInit) => {
    asked.push(`${input} ${String(init?.body)}`);
    return new Response(JSON.stringify({ error: "invalid_client", error_description: "Invalid client_id" }), {
      status: 400,
      headers: { "Content-Type": "application/json" },
    });
  };
  const shown: unknown[] = [];
  const refused = await deviceLogin({
    casdoorUrl: "http://127.0.0.1:1/",
    organization: "globex",
    onUserCode: (start) => shown.push(start),
    fetch: fetchOff,
  }).then(
    () => assert.fail("signed in"),
    (error: unknown) => error,
  );
  assert.ok(refused instanceof Error);
  assert.equal((refused as Error & { code?: string }).code, DEVICE_LOGIN_OFF);
  assert.match(refused.message, /device sign-in is not on for the organization globex/);
  assert.match(refused.message, /`device_login: true`/);
  assert.match(refused.message, /Invalid client_id/);
  assert.deepEqual(shown, []); // no code to show
  assert.equal(asked.length, 1);
  assert.match(asked[0] ?? "", /^http:\/\/127\.0\.0\.1:1\/api\/device-auth client_id=globex_cli/);
});

test("key ids parse from well-formed keys only", () => {
  const key = `hk-Ab3De6Gh9Jk2_${"x".repeat(43)}`;
  assert.equal(parseKeyId(key), "Ab3De6Gh9Jk2");
  assert.equal(parseKeyId("hk-short_secret"), undefined);
  assert.equal(parseKeyId("Bearer something"), undefined);
});

test("listing options become the retrieve query (tag repeated, metadata as JSON)", () => {
  const q = listQuery({ namespace: "n", tags: ["a", "b"], metadata: { k: 1 }, limit: 2, cursor: null });
  assert.deepEqual(q.getAll("tag"), ["a", "b"]);
  assert.equal(q.get("metadata"), '{"k":1}');
  assert.equal(q.get("limit"), "2");
  assert.equal(q.has("cursor"), false);
});

test("JSON lines round trip", () => {
  const lines = [{ content: "one", id: "a" }, { content: "two" }];
  assert.deepEqual(parseJsonl(toJsonl(lines)), lines);
});

test("Retry-After: seconds or an HTTP date", () => {
  assert.equal(parseRetryAfter("7"), 7);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6);
});

test("the project's error body becomes a typed HanzoError", async () => {
  const body = { error: { code: "validation_error", message: "request body is invalid", details: [{ loc: ["x"] }] } };
  const response = new Response(JSON.stringify(body), { status: 422, headers: { "Retry-After": "3" } });
  const error = await errorFromResponse(response, "sent-id");
  assert.equal(error.status, 422);
  assert.equal(error.code, "validation_error");
  assert.equal(error.detailMessage, "request body is invalid");
  assert.deepEqual(error.details, [{ loc: ["x"] }]);
  assert.equal(error.requestId, "sent-id");
  assert.equal(error.retryAfter, 3);
  const echoed = await errorFromResponse(new Response("<html>", { status: 502, headers: { "X-Request-Id": "srv" } }));
  assert.equal(echoed.code, "http_error");
  assert.equal(echoed.requestId, "srv");
});

test("a client needs exactly one credential", () => {
  assert.throws(() => new HanzoClient({ gatewayUrl: "http://127.0.0.1:1" }), TypeError);
  assert.throws(() => new HanzoClient({ gatewayUrl: "http://127.0.0.1:1", apiKey: "a", accessToken: "b" }), TypeError);
});

test("the browser entry point imports no Node built-in", async () => {
  const dist = fileURLToPath(new URL("../src/", import.meta.url));
  const files = (await readdir(dist)).filter((f) => f.endsWith(".js") && f !== "node.js");
  assert.ok(files.includes("index.js"));
  for (const file of files) {
    const text = await readFile(dist + file, "utf8");
    assert.doesNotMatch(text, /from\s+["']node:|require\(/, file);
  }
});
