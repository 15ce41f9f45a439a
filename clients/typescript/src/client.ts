/**
 * The memory and key API through the gateway. Works wherever `fetch` and `crypto` are
 * global (browsers, VS Code's web and desktop hosts, Node 20+): no Node-only imports here.
 */

import { errorFromResponse, HanzoError } from "./errors.js";
import type {
  Capabilities,
  CreateKeyRequest,
  DeleteResponse,
  ImportLine,
  ImportResponse,
  KeyRecord,
  ListOptions,
  ListResponse,
  Memory,
  MemoryInput,
  MintedKey,
  SearchHit,
  SearchOptions,
  SearchResponse,
  StoreItemResult,
  StoreResponse,
  UpdateRequest,
  UsageRow,
} from "./types.js";

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface RetryInfo {
  /** 1 for the first retry */
  attempt: number;
  delayMs: number;
  status: number;
  method: string;
  path: string;
}

export interface HanzoClientOptions {
  /** e.g. `http://127.0.0.1:8080`: the gateway in front of `/v1/memory/*` and `/v1/keys` */
  gatewayUrl: string;
  /** an `hk-` key (from `mintDeviceKey`) ... */
  apiKey?: string;
  /** ... or a Casdoor access token (enough to mint a key) */
  accessToken?: string;
  /** defaults to the global `fetch` */
  fetch?: FetchLike;
  /** how many times a 429 is retried after its `Retry-After` (default 2; 0 = never) */
  maxRetries?: number;
  /** a 429 whose `Retry-After` is longer than this is not waited for (default 60 000 ms) */
  maxRetryDelayMs?: number;
  /** per attempt (default 30 000 ms) */
  timeoutMs?: number;
  /** called before each wait for a retry */
  onRetry?: (info: RetryInfo) => void;
}

interface RequestOptions {
  query?: URLSearchParams;
  json?: unknown;
  body?: string;
  contentType?: string;
  expect?: number[];
  parse?: "json" | "text";
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function requestId(): string {
  return globalThis.crypto.randomUUID();
}

/** `ListOptions` as the query of `GET /v1/memory/retrieve` (`tag` repeated, `metadata` JSON). */
export function listQuery(options: ListOptions = {}): URLSearchParams {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined || value === null) continue;
    if (name === "tags") for (const tag of value as string[]) query.append("tag", tag);
    else if (name === "metadata") query.set("metadata", JSON.stringify(value));
    else query.set(name, String(value));
  }
  return query;
}

/** `ImportLine`s as the JSON lines `POST /v1/memory/import` takes. */
export function toJsonl(lines: Iterable<ImportLine>): string {
  let out = "";
  for (const line of lines) out += JSON.stringify(line) + "\n";
  return out;
}

/** The lines of an export (`exportJsonl`) as objects. */
export function parseJsonl(text: string): ImportLine[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as ImportLine);
}

export class HanzoClient {
  readonly gatewayUrl: string;
  readonly #credential: string;
  readonly #fetch: FetchLike;
  readonly #maxRetries: number;
  readonly #maxRetryDelayMs: number;
  readonly #timeoutMs: number;
  readonly #onRetry: ((info: RetryInfo) => void) | undefined;

  constructor(options: HanzoClientOptions) {
    const credential = options.apiKey ?? options.accessToken;
    if (!credential) throw new TypeError("HanzoClient needs apiKey or accessToken");
    if (options.apiKey && options.accessToken) {
      throw new TypeError("HanzoClient takes apiKey or accessToken, not both");
    }
    this.gatewayUrl = options.gatewayUrl.replace(/\/+$/, "");
    this.#credential = credential;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#maxRetries = options.maxRetries ?? 2;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 60_000;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#onRetry = options.onRetry;
  }

  /** One call; non-success answers throw `HanzoError`. 429s are retried after `Retry-After`. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const query = options.query?.toString();
    const url = `${this.gatewayUrl}${path}${query ? `?${query}` : ""}`;
    const expect = options.expect ?? [200];
    for (let attempt = 0; ; attempt++) {
      const id = requestId();
      const headers: Record<string, string> = {
        Authorization: `Bearer ${this.#credential}`,
        Accept: "application/json",
        "X-Request-Id": id,
      };
      let body: string | undefined;
      if (options.json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(options.json);
      } else if (options.body !== undefined) {
        headers["Content-Type"] = options.contentType ?? "application/octet-stream";
        body = options.body;
      }
      const init: RequestInit = { method, headers, signal: AbortSignal.timeout(this.#timeoutMs) };
      if (body !== undefined) init.body = body;
      const response = await this.#fetch(url, init);
      if (expect.includes(response.status)) {
        if (options.parse === "text") return (await response.text()) as T;
        const text = await response.text();
        return (text ? JSON.parse(text) : undefined) as T;
      }
      const error = await errorFromResponse(response, id);
      if (error.status !== 429 || attempt >= this.#maxRetries) throw error;
      // Refused by the limiter before reaching the service: safe to send again, even a POST.
      const delayMs = Math.ceil((error.retryAfter ?? 1) * 1000);
      if (delayMs > this.#maxRetryDelayMs) throw error;
      this.#onRetry?.({ attempt: attempt + 1, delayMs, status: error.status, method, path });
      await sleep(delayMs);
    }
  }

  // ------------------------------------------------------------------ memories

  /** Store one memory; answers its id and whether it was `created`, `updated` or a `duplicate`. */
  async store(memory: string | MemoryInput, fields: Omit<MemoryInput, "content"> = {}): Promise<StoreItemResult> {
    const item = typeof memory === "string" ? { ...fields, content: memory } : { ...memory, ...fields };
    const answer = await this.storeMany([item]);
    const first = answer.results[0];
    if (!first) throw new HanzoError({ status: 200, code: "empty_answer", message: "store answered no result" });
    return first;
  }

  /** Store a batch (up to the service's `max_batch`, 512 by default) in one request. */
  storeMany(memories: MemoryInput[]): Promise<StoreResponse> {
    return this.request("POST", "/v1/memory/store", { json: { memories }, expect: [200, 201] });
  }

  async search(query: string, options: SearchOptions = {}): Promise<SearchHit[]> {
    const answer = await this.request<SearchResponse>("POST", "/v1/memory/search", {
      json: { query, ...options },
    });
    return answer.results;
  }

  /** One memory by id; another tenant's (or another user's private) memory is a 404. */
  async get(id: string): Promise<Memory> {
    const answer = await this.request<ListResponse>("GET", "/v1/memory/retrieve", {
      query: new URLSearchParams({ id }),
    });
    const memory = answer.memories[0];
    if (!memory) throw new HanzoError({ status: 404, code: "not_found", message: "memory not found" });
    return memory;
  }

  /** One page of the caller's memories in creation order; pass `next_cursor` back as `cursor`. */
  list(options: ListOptions = {}): Promise<ListResponse> {
    return this.request("GET", "/v1/memory/retrieve", { query: listQuery(options) });
  }

  /** Every matching memory, page after page (`limit` is the page size). */
  async *listAll(options: Omit<ListOptions, "cursor"> = {}): AsyncGenerator<Memory, void, undefined> {
    let cursor: string | null = null;
    do {
      const page: ListResponse = await this.list({ ...options, cursor });
      yield* page.memories;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** Change content (re-embedded), metadata, tags, importance or expiry. */
  update(id: string, changes: UpdateRequest): Promise<Memory> {
    return this.request("PATCH", `/v1/memory/${encodeURIComponent(id)}`, { json: changes });
  }

  delete(id: string): Promise<DeleteResponse> {
    return this.request("DELETE", `/v1/memory/${encodeURIComponent(id)}`, { expect: [200, 204] });
  }

  /** The caller's visible memories as JSON lines (see `parseJsonl`). */
  exportJsonl(): Promise<string> {
    return this.request("GET", "/v1/memory/export", { parse: "text" });
  }

  /** JSON lines as exported (or the lines as objects); ids upsert, so nothing is duplicated. */
  importJsonl(lines: string | Iterable<ImportLine>): Promise<ImportResponse> {
    const body = typeof lines === "string" ? lines : toJsonl(lines);
    return this.request("POST", "/v1/memory/import", { body, contentType: "application/x-ndjson" });
  }

  capabilities(): Promise<Capabilities> {
    return this.request("GET", "/v1/memory/capabilities");
  }

  // ------------------------------------------------------------------ keys and usage

  /** Mint a key (shown once, in `key`). Scopes beyond the caller's answer 403 `scope_escalation`. */
  createKey(request: CreateKeyRequest): Promise<MintedKey> {
    return this.request("POST", "/v1/keys", { json: request, expect: [201] });
  }

  /** Your keys (with `keys:manage`: your organization's). */
  async listKeys(): Promise<KeyRecord[]> {
    return (await this.request<{ keys: KeyRecord[] }>("GET", "/v1/keys")).keys;
  }

  getKey(keyId: string): Promise<KeyRecord> {
    return this.request("GET", `/v1/keys/${encodeURIComponent(keyId)}`);
  }

  /** A new secret for the same key id; the old one keeps working for `grace_seconds`. */
  rotateKey(keyId: string, options: { grace_seconds?: number } = {}): Promise<MintedKey> {
    return this.request("POST", `/v1/keys/${encodeURIComponent(keyId)}/rotate`, { json: options });
  }

  /** Revoke a key: refused at every gateway within the revocation bound (5 s by default). */
  revokeKey(keyId: string): Promise<KeyRecord> {
    return this.request("DELETE", `/v1/keys/${encodeURIComponent(keyId)}`, { expect: [200, 204] });
  }

  /** Usage counters visible to the caller (its own user and keys; an org admin: all). */
  async usage(options: { day?: string } = {}): Promise<UsageRow[]> {
    const query = new URLSearchParams();
    if (options.day) query.set("day", options.day);
    return (await this.request<{ usage: UsageRow[] }>("GET", "/v1/usage", { query })).usage;
  }
}
