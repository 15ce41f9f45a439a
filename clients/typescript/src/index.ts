/**
 * `@hanzo/client`: the memory and key API through the gateway, and Casdoor sign-in
 * (PKCE parts, device code, device key, sign-out). Browser-safe: only `fetch` and `crypto`.
 * The loopback PKCE listener for desktop hosts is `@hanzo/client/node` (`pkceLogin`).
 */

export { HanzoClient, listQuery, parseJsonl, toJsonl } from "./client.js";
export type { FetchLike, HanzoClientOptions, RetryInfo } from "./client.js";
export { errorFromResponse, HanzoError, LoginError, parseRetryAfter } from "./errors.js";
export type { ErrorBody } from "./errors.js";
export {
  base64url,
  DEFAULT_DEVICE_SCOPES,
  DEFAULT_OAUTH_SCOPE,
  DEVICE_CODE_GRANT,
  DEVICE_LOGIN_OFF,
  deviceLogin,
  exchangeCode,
  mintDeviceKey,
  parseKeyId,
  pkcePair,
  randomToken,
  s256,
  sharedClientId,
  orgCliClientId,
  signOut,
  startPkce,
} from "./signin.js";
export type { DeviceLoginOptions, PkceSession, PkceStartOptions } from "./signin.js";
export type * from "./types.js";
