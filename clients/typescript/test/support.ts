// What the end-to-end tests share: the running stack's coordinates (from the env the
// pytest fixture sets) and a headless stand-in for the user's browser on Casdoor.
import assert from "node:assert/strict";

import { pkceLogin } from "../src/node.js";
import type { TokenResponse } from "../src/index.js";

export interface Stack {
  gateway: string;
  casdoor: string;
  cliClientId: string;
  org: string;
  otherOrg: string;
  password(envName: string): string;
}

/** The running stack, or `undefined` when the env does not name one (tests then skip). */
export function stackFromEnv(): Stack | undefined {
  const env = process.env;
  const gateway = env.HANZO_E2E_GATEWAY_URL;
  const casdoor = env.HANZO_E2E_CASDOOR_URL;
  const cliClientId = env.HANZO_E2E_CLI_CLIENT_ID;
  if (!gateway || !casdoor || !cliClientId) return undefined;
  return {
    gateway,
    casdoor,
    cliClientId,
    org: env.HANZO_E2E_ORG ?? "acme",
    otherOrg: env.HANZO_E2E_OTHER_ORG ?? "globex",
    password(envName) {
      const value = env[envName];
      assert.ok(value, `${envName} is not set`);
      return value;
    },
  };
}

/** Skip the stack suites without a stack, unless HANZO_E2E_REQUIRED says one must be there. */
export const SKIP =
  stackFromEnv() || process.env.HANZO_E2E_REQUIRED
    ? false
    : "set HANZO_E2E_* (tests/e2e/test_typescript_client.py does)";

/**
 * Plays the user's browser on Casdoor's sign-in page the way tests/e2e/support.py does:
 * posts the credentials to /api/login as Casdoor's own page does, then follows the
 * redirect to the client's loopback port.
 */
export function headlessBrowser(casdoor: string, org: string, user: string, password: string) {
  return async (authorizeUrl: string): Promise<void> => {
    const q = new URL(authorizeUrl).searchParams;
    const params = new URLSearchParams({
      clientId: q.get("client_id") ?? "",
      responseType: "code",
      redirectUri: q.get("redirect_uri") ?? "",
      scope: q.get("scope") ?? "",
      state: q.get("state") ?? "",
      code_challenge: q.get("code_challenge") ?? "",
      code_challenge_method: "S256",
    });
    const response = await fetch(`${casdoor}/api/login?${params}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        application: `hanzo-cli-org-${org}`, // the shared CLI app, seen from this tenant
        organization: org,
        username: user,
        password,
        type: "code",
      }),
    });
    const reply = (await response.json()) as { status: string; msg?: string; data?: string };
    assert.equal(reply.status, "ok", `Casdoor refused the sign-in: ${reply.msg ?? ""}`);
    const redirect = new URL(q.get("redirect_uri") ?? "");
    redirect.searchParams.set("code", reply.data ?? "");
    redirect.searchParams.set("state", q.get("state") ?? "");
    const back = await fetch(redirect);
    assert.equal(back.status, 200);
    await back.text();
  };
}

/** A PKCE sign-in through the client's own loopback listener, with the headless browser. */
export function signIn(stack: Stack, org: string, user: string, passwordEnv: string): Promise<TokenResponse> {
  return pkceLogin({
    casdoorUrl: stack.casdoor,
    clientId: stack.cliClientId,
    organization: org,
    openBrowser: headlessBrowser(stack.casdoor, org, user, stack.password(passwordEnv)),
    timeoutMs: 30_000,
  });
}

export function unique(prefix: string): string {
  return `${prefix}-${globalThis.crypto.randomUUID().slice(0, 8)}`;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
