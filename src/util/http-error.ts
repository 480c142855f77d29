/**
 * Errors of HTTP APIs (the AWS SDK's) when the answer is not the API's at all: a proxy's or load balancer's HTML
 * error page. The SDK then reports an XML parse error ("mismatched tags <hr> and </body>", over two lines) or an
 * "Unknown" error; what helps is the endpoint, the HTTP status and the first line of what came back, in one line.
 */
import { redactUrl } from './redact.js';

interface SdkLikeError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number; body?: unknown; headers?: Record<string, string> };
  /** set by endpointAnnotator */
  $endpoint?: string;
}

/** The first line of a body that says something: tags stripped, blank lines skipped, at most 120 characters. */
export function firstBodyLine(body: string): string | undefined {
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(body)?.[1];
  const lines = [title ?? '', ...body.replace(/<[^>]*>/g, '\n').split(/\r?\n/)];
  for (const l of lines) {
    const t = l.replace(/\s+/g, ' ').trim();
    if (t) return t.length > 120 ? `${t.slice(0, 117)}...` : t;
  }
  return undefined;
}

/**
 * One line for an answer that was not the API's (HTML, or anything the SDK could not read), else undefined:
 * `<endpoint> answered HTTP <status> (<first line>), not an API response`.
 */
export function foreignResponse(err: unknown): string | undefined {
  const e = err as SdkLikeError | undefined;
  if (!e || typeof e !== 'object') return undefined;
  const status = e.$response?.statusCode ?? e.$metadata?.httpStatusCode;
  if (status === undefined) return undefined;
  const msg = e.message ?? '';
  const body = typeof e.$response?.body === 'string' ? e.$response.body : undefined;
  const contentType = e.$response?.headers?.['content-type'] ?? '';
  const html = /text\/html/i.test(contentType) || (body !== undefined && /<html|<!doctype html/i.test(body));
  const unreadable =
    /XML parse error|Deserialization error|Unexpected token|is not valid JSON/i.test(msg) ||
    ((e.name === 'Unknown' || e.name === 'UnknownError') && (msg === 'Unknown' || msg === 'UnknownError'));
  if (!html && !unreadable) return undefined;
  const line = body !== undefined ? firstBodyLine(body) : undefined;
  const where = e.$endpoint ? redactUrl(e.$endpoint) : 'the endpoint';
  return `${where} answered HTTP ${status}${line ? ` (${line})` : ''}, not an API response (a proxy or the wrong endpoint?)`;
}

interface MiddlewareClient {
  middlewareStack: {
    add(
      mw: (next: (args: unknown) => Promise<unknown>) => (args: unknown) => Promise<unknown>,
      opts: { step: 'finalizeRequest'; name: string; priority?: 'high' | 'low' },
    ): void;
  };
}

/** Record on every error of this SDK client the endpoint the request went to (for foreignResponse). */
export function annotateEndpoint<C>(client: C): C {
  (client as unknown as MiddlewareClient).middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        const req = (
          args as { request?: { protocol?: string; hostname?: string; port?: number; path?: string } }
        ).request;
        if (req?.hostname && err && typeof err === 'object' && !('$endpoint' in err)) {
          Object.defineProperty(err, '$endpoint', {
            value: `${req.protocol ?? 'https:'}//${req.hostname}${req.port ? `:${req.port}` : ''}${req.path ?? '/'}`,
            enumerable: false,
          });
        }
        throw err;
      }
    },
    { step: 'finalizeRequest', name: 'cibEndpointAnnotator', priority: 'low' },
  );
  return client;
}
