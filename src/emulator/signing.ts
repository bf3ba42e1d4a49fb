/**
 * Signed video URLs in the style of OSS: `/videos/{id}.mp4?Expires=<unix s>&Signature=<hex>`.
 * No Authorization header is needed, but a URL without a valid signature, or past its expiry, gets 403
 * (reference §8.5), so a client that drops the query string or downloads too late is caught.
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
    return `${origin}${videoPath(taskId)}?Expires=${expires}&Signature=${this.sign(taskId, expires)}`;
  }

  check(taskId: string, expires: string | null, signature: string | null, now: number): SignatureCheck {
    if (!expires || !signature || !/^\d+$/.test(expires)) return 'invalid';
    const expected = Buffer.from(this.sign(taskId, expires));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
    return now > Number(expires) * 1000 ? 'expired' : 'ok';
  }

  private sign(taskId: string, expires: string): string {
    return createHmac('sha256', this.secret).update(`${taskId}\n${expires}`).digest('hex');
  }
}

export function videoPath(taskId: string): string {
  return `/videos/${encodeURIComponent(taskId)}.mp4`;
}
