/** Typed errors: the API's shared JSON error body, and sign-in failures. */

/** The project's error body: `{"error": {"code", "message", "details"?}}`. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown; request_id?: string };
}

/** A non-success answer from the gateway or a service behind it. */
export class HanzoError extends Error {
  override readonly name = "HanzoError";
  /** HTTP status */
  readonly status: number;
  /** stable machine-readable code, e.g. `not_found`, `scope_escalation`, `rate_limited` */
  readonly code: string;
  /** what was wrong, when the service said (validation `loc`s, `excess_scopes`, ...) */
  readonly details: unknown;
  /**
   * The request's id: the one the server answered with (`X-Request-Id` header or the
   * body's `request_id`) when it did, else the `X-Request-Id` this client sent.
   */
  readonly requestId: string | undefined;
  /** seconds, from `Retry-After` (429 and 503 answers) */
  readonly retryAfter: number | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    details?: unknown;
    requestId?: string | undefined;
    retryAfter?: number | undefined;
  }) {
    super(`HTTP ${init.status} ${init.code}: ${init.message}`);
    this.status = init.status;
    this.code = init.code;
    this.details = init.details;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
  }

  /** The service's message alone (without status and code). */
  get detailMessage(): string {
    return this.message.replace(/^HTTP \d+ [^:]*: /, "");
  }
}

/** The sign-in did not complete; the message says which step failed. */
export class LoginError extends Error {
  override readonly name = "LoginError";
  /** the OAuth error code when Casdoor gave one (`access_denied`, `expired_token`, ...) */
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

/** Seconds to wait from a `Retry-After` value (delta-seconds or an HTTP date). */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/** A `HanzoError` from a non-success response (reads the body once). */
export async function errorFromResponse(response: Response, sentRequestId?: string): Promise<HanzoError> {
  const text = await response.text().catch(() => "");
  let code = "http_error";
  let message = text.slice(0, 200) || response.statusText || "request failed";
  let details: unknown;
  let bodyRequestId: string | undefined;
  try {
    const body = JSON.parse(text) as Partial<ErrorBody> | null;
    const error = body && typeof body === "object" ? body.error : undefined;
    if (error && typeof error === "object") {
      if (typeof error.code === "string") code = error.code;
      if (typeof error.message === "string") message = error.message;
      details = error.details;
      if (typeof error.request_id === "string") bodyRequestId = error.request_id;
    }
  } catch {
    // not JSON (a proxy's HTML page, say): keep the start of the text as the message
  }
  return new HanzoError({
    status: response.status,
    code,
    message,
    details,
    requestId: response.headers.get("x-request-id") ?? bodyRequestId ?? sentRequestId,
    retryAfter: parseRetryAfter(response.headers.get("retry-after")),
  });
}
