// 429s from the real gateway's limiter: typed, and retried after Retry-After (bounded).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { HanzoClient, HanzoError, signOut, type RetryInfo } from "../src/index.js";
import { signIn, SKIP, sleep, stackFromEnv, unique, type Stack } from "./support.js";

describe("rate limits through the running stack", { skip: SKIP }, () => {
  const stack = stackFromEnv() as Stack;

  it("a 429 is a typed error, not waited past maxRetryDelayMs, and retried after Retry-After", async () => {
    const tokens = await signIn(stack, stack.org, "alice", "ACME_ALICE_PASSWORD");
    // a key with its own tight limit (a key's limits override the plan's)
    const admin = new HanzoClient({ gatewayUrl: stack.gateway, accessToken: tokens.access_token });
    const limited = await admin.createKey({
      name: unique("rpm2"),
      scopes: ["memory:read"],
      limits: { requests_per_minute: 2 },
    });
    const noRetry = new HanzoClient({ gatewayUrl: stack.gateway, apiKey: limited.key, maxRetries: 0 });
    /** calls until the limiter refuses; a refusal about to expire is waited out first */
    const exhaust = async (): Promise<HanzoError> => {
      for (let i = 0; i < 10; i++) {
        const error = await noRetry.capabilities().then(
          () => undefined,
          (e: unknown) => e,
        );
        if (error === undefined) continue;
        if (!(error instanceof HanzoError) || error.status !== 429) throw error;
        if ((error.retryAfter ?? 0) >= 3) return error;
        await sleep(((error.retryAfter ?? 1) + 0.5) * 1000); // the window is about to roll over
      }
      assert.fail("no lasting 429 after 10 calls at 2 per minute");
    };
    const refused = await exhaust();
    assert.equal(refused.status, 429);
    assert.ok(refused.code && refused.code !== "http_error", refused.code);
    assert.ok((refused.retryAfter ?? 0) <= 60, String(refused.retryAfter));

    // a Retry-After longer than maxRetryDelayMs is not waited for
    const retries: RetryInfo[] = [];
    const impatient = new HanzoClient({
      gatewayUrl: stack.gateway,
      apiKey: limited.key,
      maxRetryDelayMs: 2_000,
      onRetry: (info) => retries.push(info),
    });
    await assert.rejects(impatient.capabilities(), { status: 429 });
    assert.equal(retries.length, 0);

    const patient = new HanzoClient({
      gatewayUrl: stack.gateway,
      apiKey: limited.key,
      maxRetries: 3,
      maxRetryDelayMs: 65_000,
      onRetry: (info) => retries.push(info),
    });
    const caps = await patient.capabilities();
    assert.ok(caps.search_modes.length > 0);
    assert.ok(retries.length >= 1, "the call succeeded without a retry");
    assert.equal(retries[0]?.status, 429);
    assert.ok((retries[0]?.delayMs ?? 0) >= 1000);

    assert.ok(await signOut(stack.gateway, limited.key));
  });
});
