/** Small node:http helpers: bounded body reading, JSON replies, byte ranges and paced file bodies. */
import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Reads the request body, buffering at most `limit` bytes. The rest is drained rather than left unread,
 * so the client still receives our error response instead of a reset connection.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<{ body: Buffer; tooLarge: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.once('end', () => resolve({ body: tooLarge ? Buffer.alloc(0) : Buffer.concat(chunks), tooLarge }));
    req.once('error', reject);
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
}

export type RangeRequest =
  | { kind: 'whole' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' };

/**
 * Interprets a Range header for a file of `size` bytes. Supports one range (`a-b`, `a-`, `-n`); anything
 * else (multiple ranges, other units, malformed) is ignored and the whole file is sent, as RFC 9110 allows.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'whole' };
  const [first, last] = [m[1] ?? '', m[2] ?? ''];
  if (first === '') {
    const suffix = Number(last);
    return suffix === 0 || size === 0 ? { kind: 'unsatisfiable' } : { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return { kind: 'whole' };
  return start >= size ? { kind: 'unsatisfiable' } : { kind: 'partial', start, end };
}

const CHUNK_BYTES = 64 * 1024;

/**
 * Writes bytes [start, end] of `file` to the response, at most `bytesPerSecond` of them per second when that is
 * non-zero, waiting for each chunk to reach the socket. The response is left open: the caller ends it, or cuts
 * the connection to simulate a transfer that breaks off. Returns false if the client went away.
 */
export async function writeFileRange(res: ServerResponse, file: string, start: number, end: number, bytesPerSecond = 0): Promise<boolean> {
  if (end < start) return !res.destroyed;
  const chunkBytes = bytesPerSecond > 0 ? Math.max(1, Math.min(CHUNK_BYTES, Math.floor(bytesPerSecond / 10))) : CHUNK_BYTES;
  const stream = createReadStream(file, { start, end, highWaterMark: chunkBytes });
  const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
  const began = Date.now();
  let sent = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (bytesPerSecond > 0) {
        const wait = began + (sent / bytesPerSecond) * 1000 - Date.now();
        if (wait > 0) await Promise.race([sleep(wait), closed]);
      }
      if (res.destroyed) return false;
      sent += chunk.length;
      await Promise.race([new Promise<void>((resolve) => res.write(chunk, () => resolve())), closed]);
    }
    return !res.destroyed;
  } finally {
    stream.destroy();
  }
}
