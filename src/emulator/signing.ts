/**
 * Signed video URLs in the style of OSS: `/videos/{id}.mp4?Expires=<unix s>&OSSAccessKeyId=STS.<id>&Signature=<hex>`.
 * No Authorization header is needed, but a URL without a valid signature, or past its expiry, gets 403
 * (reference §8.5), so a client that drops the query string or downloads too late is caught.
 * Every URL is signed with a key id of its own, as URLs signed with temporary (STS) credentials are, so each
 * task query hands out a fresh URL: a client whose URL was refused can ask the task for a new one.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type SignatureCheck = 'ok' | 'invalid' | 'expired';

export class VideoUrlSigner {
  /** Per emulator instance: URLs do not outlive the process that can serve them. */
  private readonly secret = randomBytes(32);

  /** @param validityMs how long a URL stays valid after the task ended (24 h on the real service). */
  constructor(private readonly validityMs: number) {}

  url(origin: string, taskId: string, endAt: number): string {
    const expires = String(Math.floor((endAt + this.validityMs) / 1000));
    const keyId = `STS.${randomBytes(12).toString('hex')}`;
    return `${origin}${videoPath(taskId)}?Expires=${expires}&OSSAccessKeyId=${keyId}&Signature=${this.sign(taskId, expires, keyId)}`;
  }

  check(taskId: string, params: URLSearchParams, now: number): SignatureCheck {
    const [expires, keyId, signature] = ['Expires', 'OSSAccessKeyId', 'Signature'].map((name) => params.get(name));
    if (!expires || !keyId || !signature || !/^\d+$/.test(expires)) return 'invalid';
    const expected = Buffer.from(this.sign(taskId, expires, keyId));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
    return now > Number(expires) * 1000 ? 'expired' : 'ok';
  }

  private sign(taskId: string, expires: string, keyId: string): string {
    return createHmac('sha256', this.secret).update(`${taskId}\n${expires}\n${keyId}`).digest('hex');
  }
}

export function videoPath(taskId: string): string {
  return `/videos/${encodeURIComponent(taskId)}.mp4`;
}
