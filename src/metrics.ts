/**
 * Our own counters, recorded from activities through the Temporal SDK's metric meter, so one Prometheus
 * endpoint (`i2v worker --metrics-port`) serves them beside Temporal's own. Names are prefixed `i2v_`.
 * Money is counted in hundredths of the currency (counters are integers).
 */
import { metricMeter } from '@temporalio/activity';

type Attributes = Record<string, string>;

function add(name: string, description: string, value: number, attributes: Attributes = {}): void {
  metricMeter.createCounter(name, undefined, description).add(value, attributes);
}

export const metrics = {
  submission: (model: string) => add('i2v_submissions', 'Paid submissions accepted by the provider', 1, { model }),
  poll: () => add('i2v_polls', 'Task status checks sent to the provider', 1),
  failure: (code: string) => add('i2v_shot_failures', 'Shot takes that ended failed, by error code', 1, { code }),
  download: (bytes: number) => {
    add('i2v_downloads', 'Videos downloaded and verified', 1);
    add('i2v_download_bytes', 'Bytes of verified videos downloaded', bytes);
  },
  spend: (amount: number, currency: string) => add('i2v_spend_cents', 'List-price spend in hundredths of the currency', Math.round(amount * 100), { currency }),
};
