/**
 * Sign-in at Casdoor the way `hanzo login` does, without Node-only imports: PKCE parts an
 * extension drives with its own redirect handling, the device-code grant, minting a device
 * key and signing out. The loopback listener for desktop use is in `./node.ts`.
 */

import { HanzoClient, type FetchLike } from "./client.js";
import { HanzoError, LoginError } from "./errors.js";
import type { DeviceAuthorization, KeyRecord, MintedKey, TokenResponse } from "./types.js";

export const DEFAULT_OAUTH_SCOPE = "openid profile";
export const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

const defaultFetch: FetchLike = (input, init) => globalThis.fetch(input, init);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * `hanzo-cli` is a Casdoor *shared* application: one client id for every tenant, addressed
 * as `<client id>-org-<organization>` so users sign in to their own organization.
 */
export function sharedClientId(clientId: string, organization: string): string {
  return `${clientId}-org-${organization}`;
}

/**
 * The tenant's own CLI application, for the device-code grant: its device page signs users
 * in to `organization` (the shared application's page would use `built-in`). Its name is
 * its public client id (hanzo_contract/signin.py).
 */
export function orgCliClientId(organization: string): string {
  return `${organization}_cli`;
}

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** `n` random bytes, base64url (48 bytes -> a 64-character PKCE verifier). */
export function randomToken(n = 32): string {
  return base64url(globalThis.crypto.getRandomValues(new Uint8Array(n)));
}

/** The S256 code challenge of `verifier` (RFC 7636 section 4.2). */
export async function s256(verifier: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = randomToken(48);
  return { verifier, challenge: await s256(verifier) };
}

export interface PkceStartOptions {
  casdoorUrl: string;
  /** the CLI application's client id (`hanzo up` prints it; `cli_client_id` in stack.json) */
  clientId: string;
  organization: string;
  /** where Casdoor sends the browser back: a loopback URL, or the extension's own handler */
  redirectUri: string;
  scope?: string;
  fetch?: FetchLike;
}

/** One PKCE sign-in in progress: open `authorizeUrl`, then `finish` with the redirect. */
export interface PkceSession {
  authorizeUrl: string;
  state: string;
  redirectUri: string;
  /** the shared client id (`<client id>-org-<organization>`) the session signs in with */
  clientId: string;
  /** check `state`, take the code from the redirect's query, exchange it (no secret). */
  finish(redirect: URL | URLSearchParams | string): Promise<TokenResponse>;
}

export async function startPkce(options: PkceStartOptions): Promise<PkceSession> {
  const casdoor = options.casdoorUrl.replace(/\/+$/, "");
  const clientId = sharedClientId(options.clientId, options.organization);
  const { verifier, challenge } = await pkcePair();
  const state = randomToken(16);
  const query = new URLSearchParams({
    client_id: clientId,
    response_type: "code",
    redirect_uri: options.redirectUri,
    scope: options.scope ?? DEFAULT_OAUTH_SCOPE,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  return {
    authorizeUrl: `${casdoor}/login/oauth/authorize?${query}`,
    state,
    redirectUri: options.redirectUri,
    clientId,
    async finish(redirect) {
      const params =
        redirect instanceof URLSearchParams
          ? redirect
          : new URL(redirect.toString(), "http://127.0.0.1").searchParams;
      if (params.get("state") !== state) {
        throw new LoginError("state mismatch on the redirect (possible CSRF); try again", "state_mismatch");
      }
      const code = params.get("code");
      if (!code) {
        const error = params.get("error") ?? "unknown";
        throw new LoginError(`Casdoor returned no code: ${error}`, error);
      }
      return exchangeCode({
        casdoorUrl: casdoor,
        clientId,
        code,
        verifier,
        redirectUri: options.redirectUri,
        fetch: options.fetch ?? defaultFetch,
      });
    },
  };
}

async function tokenEndpoint(casdoorUrl: string, form: Record<string, string>, fetchFn: FetchLike) {
  const response = await fetchFn(`${casdoorUrl.replace(/\/+$/, "")}/api/login/oauth/access_token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new LoginError(`Casdoor's token endpoint answered HTTP ${response.status} without JSON`);
  }
}

/** The code of the `LoginError` a tenant with device sign-in off gives (`device_login`). */
export const DEVICE_LOGIN_OFF = "device_login_off";

/**
 * Device sign-in is off for the tenant (as `hanzo login --device` says it): the tenant file
 * setting to change, and why it is off by default (hanzo_contract/signin.py).
 */
function deviceLoginOff(organization: string, clientId: string, body: Record<string, unknown>): LoginError {
  const reason = typeof body.error_description === "string" ? body.error_description : String(body.error);
  return new LoginError(
    `device sign-in is not on for the organization ${organization} (or it does not exist): ` +
      `Casdoor gives ${clientId} no device grant (${reason}); its tenant file entry needs ` +
      "`device_login: true`, off by default: Casdoor's device grant identifies the user by name only. " +
      "Sign in with the browser (PKCE) instead.",
    DEVICE_LOGIN_OFF,
  );
}

function oauthFailure(step: string, body: Record<string, unknown>): LoginError {
  const code = typeof body.error === "string" ? body.error : undefined;
  const description = typeof body.error_description === "string" ? body.error_description : code;
  return new LoginError(`${step} failed: ${description ?? "no access token in the answer"}`, code);
}

/** Trade an authorization code and its PKCE verifier for tokens (no client secret). */
export async function exchangeCode(options: {
  casdoorUrl: string;
  /** the shared client id the code was issued to */
  clientId: string;
  code: string;
  verifier: string;
  redirectUri: string;
  fetch?: FetchLike;
}): Promise<TokenResponse> {
  const body = await tokenEndpoint(
    options.casdoorUrl,
    {
      grant_type: "authorization_code",
      client_id: options.clientId,
      code: options.code,
      code_verifier: options.verifier,
      redirect_uri: options.redirectUri,
    },
    options.fetch ?? defaultFetch,
  );
  if (typeof body.access_token !== "string" || !body.access_token || body.error) {
    throw oauthFailure("code exchange", body);
  }
  return body as TokenResponse;
}

export interface DeviceLoginOptions {
  casdoorUrl: string;
  /** the user's organization: the code is for its CLI application (`orgCliClientId`) */
  organization: string;
  /** show `user_code` and `verification_uri` to the user (may be async) */
  onUserCode: (start: DeviceAuthorization) => unknown;
  scope?: string;
  /** give up earlier than the code's own `expires_in` (ms) */
  timeoutMs?: number;
  signal?: AbortSignal;
  fetch?: FetchLike;
}

/**
 * The device-code grant (RFC 8628): ask for a code, show it, poll the token endpoint every
 * `interval` seconds (5 more after each `slow_down`) until approved, denied or expired.
 */
export async function deviceLogin(options: DeviceLoginOptions): Promise<TokenResponse> {
  const fetchFn = options.fetch ?? defaultFetch;
  const casdoor = options.casdoorUrl.replace(/\/+$/, "");
  const clientId = orgCliClientId(options.organization);
  const response = await fetchFn(`${casdoor}/api/device-auth`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({ client_id: clientId, scope: options.scope ?? DEFAULT_OAUTH_SCOPE }).toString(),
    signal: AbortSignal.timeout(15_000),
  });
  const start = (await response.json().catch(() => ({}))) as Partial<DeviceAuthorization> & Record<string, unknown>;
  if (typeof start.device_code !== "string" || typeof start.user_code !== "string") {
    // Casdoor refuses a device code only for a client id it does not know, which is what
    // a tenant's CLI application answers to while its device sign-in is off
    if (typeof start.error === "string") throw deviceLoginOff(options.organization, clientId, start);
    throw oauthFailure("device authorization", start);
  }
  await options.onUserCode(start as DeviceAuthorization);
  let intervalMs = (Number(start.interval) > 0 ? Number(start.interval) : 5) * 1000;
  const expiresMs = (Number(start.expires_in) > 0 ? Number(start.expires_in) : 300) * 1000;
  const deadline = Date.now() + Math.min(expiresMs, options.timeoutMs ?? Infinity);
  while (Date.now() + intervalMs <= deadline) {
    await sleep(intervalMs);
    if (options.signal?.aborted) throw new LoginError("device sign-in cancelled", "cancelled");
    const body = await tokenEndpoint(
      casdoor,
      { grant_type: DEVICE_CODE_GRANT, client_id: clientId, device_code: start.device_code },
      fetchFn,
    );
    if (typeof body.access_token === "string" && body.access_token && !body.error) {
      return body as TokenResponse;
    }
    if (body.error === "slow_down") intervalMs += 5000;
    else if (body.error === "unsupported_grant_type") throw deviceLoginOff(options.organization, clientId, body);
    else if (body.error !== "authorization_pending") throw oauthFailure("device sign-in", body);
  }
  throw new LoginError("device code expired before it was approved", "expired_token");
}

/** The key id of a well-formed `hk-<id>_<secret>` key, or `undefined`. */
export function parseKeyId(key: string): string | undefined {
  return /^hk-([A-Za-z0-9]{12})_[A-Za-z0-9_-]{43}$/.exec(key)?.[1];
}

export const DEFAULT_DEVICE_SCOPES = ["memory:read", "memory:write", "memory:delete"];

/** A key for this device, minted through the gateway with the sign-in's access token. */
export function mintDeviceKey(
  gatewayUrl: string,
  accessToken: string,
  options: { name: string; scopes?: string[]; expires_in_seconds?: number },
  clientOptions: { fetch?: FetchLike } = {},
): Promise<MintedKey> {
  const client = new HanzoClient({ gatewayUrl, accessToken, ...clientOptions });
  const request = { name: options.name, scopes: options.scopes ?? DEFAULT_DEVICE_SCOPES };
  return client.createKey(
    options.expires_in_seconds ? { ...request, expires_in_seconds: options.expires_in_seconds } : request,
  );
}

/**
 * Sign out: revoke the device key with the key itself (`DELETE /v1/keys/{key_id}`). A key the
 * gateway already refuses (401) or no longer knows (404) counts as signed out: answers
 * `undefined`; forget the local copy either way. Other failures throw `HanzoError`.
 */
export async function signOut(
  gatewayUrl: string,
  key: string,
  clientOptions: { fetch?: FetchLike } = {},
): Promise<KeyRecord | undefined> {
  const keyId = parseKeyId(key);
  if (!keyId) throw new TypeError("not a Hanzo key (hk-<id>_<secret>)");
  const client = new HanzoClient({ gatewayUrl, apiKey: key, maxRetries: 1, ...clientOptions });
  try {
    return await client.revokeKey(keyId);
  } catch (error) {
    if (error instanceof HanzoError && (error.status === 401 || error.status === 404)) return undefined;
    throw error;
  }
}
