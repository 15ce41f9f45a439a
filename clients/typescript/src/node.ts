/**
 * Node-only: the PKCE sign-in with a loopback redirect (RFC 8252) for desktop hosts (the
 * VS Code desktop extension host, CLIs). A browser-hosted extension uses `startPkce` from
 * the main entry point with its own redirect handling instead.
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import type { FetchLike } from "./client.js";
import { LoginError } from "./errors.js";
import { startPkce } from "./signin.js";
import type { TokenResponse } from "./types.js";

export * from "./index.js";

export interface PkceLoginOptions {
  casdoorUrl: string;
  /** the CLI application's client id; `organization` picks the tenant */
  clientId: string;
  organization: string;
  /** open `url` in the user's browser (VS Code: `vscode.env.openExternal`) */
  openBrowser: (url: string) => unknown;
  /** loopback port to listen on (default: a free one) */
  port?: number;
  scope?: string;
  /** how long to wait for the redirect (default 300 000 ms) */
  timeoutMs?: number;
  fetch?: FetchLike;
}

const PAGE = "Signed in to Hanzo. You can close this tab.";

/**
 * Authorization code + PKCE: listen on `http://127.0.0.1:<port>/callback`, open the
 * authorize URL, wait for the redirect, check `state`, exchange the code (no client
 * secret). The listener is closed whatever happens.
 */
export async function pkceLogin(options: PkceLoginOptions): Promise<TokenResponse> {
  let settle!: (query: URLSearchParams) => void;
  const redirected = new Promise<URLSearchParams>((resolve) => (settle = resolve));
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    if (request.method !== "GET" || url.pathname !== "/callback") {
      response.writeHead(404, { "Content-Type": "text/plain", Connection: "close" }).end("not found");
      return;
    }
    response
      .writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", Connection: "close" })
      .end(PAGE);
    settle(url.searchParams); // the first redirect wins; the code is never logged
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const { port } = server.address() as AddressInfo;
    const startOptions = {
      casdoorUrl: options.casdoorUrl,
      clientId: options.clientId,
      organization: options.organization,
      redirectUri: `http://127.0.0.1:${port}/callback`,
      ...(options.scope ? { scope: options.scope } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    };
    const session = await startPkce(startOptions);
    const timeoutMs = options.timeoutMs ?? 300_000;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LoginError(`no sign-in within ${Math.round(timeoutMs / 1000)}s`, "timeout")),
        timeoutMs,
      );
    });
    timedOut.catch(() => undefined); // a timeout after the race is over is nobody's error
    await Promise.race([Promise.resolve(options.openBrowser(session.authorizeUrl)), timedOut]);
    const query = await Promise.race([redirected, timedOut]);
    return await session.finish(query);
  } finally {
    if (timer) clearTimeout(timer);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
