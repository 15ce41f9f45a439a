/**
 * The wire shapes of the memory API (`memory_service/models.py`) and the key API
 * (`iam_sidecar/routes_keys.py`), field for field: names stay snake_case, as on the wire.
 */

export type Scope = "user" | "org";
export type SearchMode = "vector" | "keyword" | "hybrid";
export type Scalar = string | number | boolean | null;

/** One memory to store; `id` makes the store an upsert of that memory. */
export interface MemoryInput {
  content: string;
  id?: string;
  namespace?: string;
  scope?: Scope;
  metadata?: Record<string, unknown>;
  tags?: string[];
  importance?: number;
  ttl_seconds?: number;
  /** ISO 8601 date-time */
  expires_at?: string;
  embedding?: number[];
}

/** A line of an export file (`GET /v1/memory/export`), as `POST /v1/memory/import` takes it. */
export interface ImportLine extends MemoryInput {
  created_at?: string;
  updated_at?: string;
}

export interface StoreItemResult {
  id: string;
  status: "created" | "updated" | "duplicate";
}

export interface StoreResponse {
  ids: string[];
  results: StoreItemResult[];
}

export interface Memory {
  id: string;
  content: string;
  namespace: string;
  scope: Scope;
  user: string | null;
  metadata: Record<string, unknown>;
  tags: string[];
  importance: number;
  created_at: string;
  updated_at: string;
  expires_at: string | null;
}

export interface ListResponse {
  memories: Memory[];
  next_cursor: string | null;
}

/** Search filters (the body of `POST /v1/memory/search`). */
export interface Filters {
  namespace?: string;
  /** all must match */
  tags?: string[];
  /** equality on each key */
  metadata?: Record<string, Scalar>;
  scope?: Scope;
  created_after?: string;
  created_before?: string;
}

export interface SearchOptions {
  mode?: SearchMode;
  top_k?: number;
  min_score?: number;
  filters?: Filters;
  embedding?: number[];
}

export interface SearchHit {
  memory: Memory;
  score: number;
  vector_score?: number | null;
  keyword_score?: number | null;
}

export interface SearchResponse {
  mode: SearchMode;
  results: SearchHit[];
}

/** Listing options (the query of `GET /v1/memory/retrieve`). */
export interface ListOptions extends Omit<Filters, "metadata"> {
  metadata?: Record<string, Scalar>;
  /** page size, 1..500 (server default 50) */
  limit?: number;
  /** `next_cursor` of the previous page */
  cursor?: string | null;
}

export interface UpdateRequest {
  content?: string;
  metadata?: Record<string, unknown>;
  tags?: string[];
  importance?: number;
  ttl_seconds?: number;
  expires_at?: string;
}

export interface DeleteResponse {
  id: string;
  deleted: boolean;
}

export interface ImportResponse {
  created: number;
  updated: number;
  duplicate: number;
  /** lines whose expiry had already passed: not imported */
  expired: number;
}

export interface Capabilities {
  backend: string;
  search_modes: SearchMode[];
  embedding: { model?: string; dimensions?: number; [k: string]: unknown };
  limits: Record<string, number>;
  features: string[];
}

export interface Limits {
  requests_per_minute?: number | null;
  units_per_day?: number | null;
  units_per_month?: number | null;
}

export interface CreateKeyRequest {
  name: string;
  scopes: string[];
  /** another user of the organization (needs `keys:manage`) */
  owner?: string;
  owner_kind?: "user" | "application";
  expires_in_seconds?: number;
  /** this key's own limits, overriding the plan's */
  limits?: Limits;
}

export interface KeyRecord {
  key_id: string;
  prefix: string;
  organization: string;
  owner: string;
  owner_kind: string;
  name: string;
  scopes: string[];
  limits: Limits | null;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  rotated_at: number | null;
  grace_until: number | null;
  /** the key that minted this one, if a key did */
  parent_key_id: string | null;
  state: string;
}

/** The answer to creating or rotating a key: the plaintext `key` is shown this once. */
export interface MintedKey {
  key: string;
  record: KeyRecord;
}

export interface UsageRow {
  day: string;
  level: string;
  subject: string;
  organization: string;
  requests: number;
  denials: number;
  verifications: number;
}

/** Casdoor's token endpoint answer. */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  id_token?: string;
  scope?: string;
  [k: string]: unknown;
}

/** Casdoor's device authorization answer (RFC 8628 section 3.2). */
export interface DeviceAuthorization {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete?: string;
  expires_in: number;
  interval?: number;
  [k: string]: unknown;
}
