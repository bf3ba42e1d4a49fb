/** Where `i2v` finds Temporal: the environment and Temporal config profiles, else the embedded server. */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configuredConnection } from '../src/temporal/connection';
import { scratchDir } from './helpers/scratch';

describe('Temporal connection config', () => {
  it('uses the embedded server when nothing names a server', () => {
    expect(configuredConnection({ HOME: os.tmpdir(), TEMPORAL_CONFIG_FILE: '/nonexistent/temporal.toml' })).toBeUndefined();
  });

  it('reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and an API key (which implies TLS) from the environment', () => {
    const found = configuredConnection({ TEMPORAL_ADDRESS: 'my-ns.a1b2c.tmprl.cloud:7233', TEMPORAL_NAMESPACE: 'my-ns.a1b2c', TEMPORAL_API_KEY: 'secret', TEMPORAL_CONFIG_FILE: '/nonexistent/temporal.toml' });
    expect(found).toMatchObject({ namespace: 'my-ns.a1b2c', options: { address: 'my-ns.a1b2c.tmprl.cloud:7233', apiKey: 'secret', tls: true } });
  });

  it('reads a named profile from the Temporal config file, with mTLS client certificates', async () => {
    const dir = await scratchDir('i2v-envconfig-');
    await writeFile(path.join(dir, 'client.pem'), 'CERT');
    await writeFile(path.join(dir, 'client.key'), 'KEY');
    const file = path.join(dir, 'temporal.toml');
    await writeFile(file, [
      '[profile.prod]',
      'address = "temporal.internal:7233"',
      'namespace = "video"',
      '[profile.prod.tls]',
      `client_cert_path = "${path.join(dir, 'client.pem')}"`,
      `client_key_path = "${path.join(dir, 'client.key')}"`,
    ].join('\n'));
    const found = configuredConnection({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' });
    expect(found).toMatchObject({ namespace: 'video', options: { address: 'temporal.internal:7233' } });
    const tls = found?.options.tls as { clientCertPair: { crt: Uint8Array; key: Uint8Array } };
    expect(Buffer.from(tls.clientCertPair.crt).toString()).toBe('CERT');
    expect(Buffer.from(tls.clientCertPair.key).toString()).toBe('KEY');
  });
});
