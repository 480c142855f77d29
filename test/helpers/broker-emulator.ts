/** The identity broker emulator in-process on a free port, and the environment that points the client at it. */
import {
  type BrokerEmulator,
  type BrokerEmulatorOptions,
  DEFAULT_BROKER_KEY,
  startBrokerEmulator,
} from '../../emulators/broker/server.js';

export type { BrokerEmulator } from '../../emulators/broker/server.js';
export { DEFAULT_BROKER_KEY } from '../../emulators/broker/server.js';

export function startBroker(opts: BrokerEmulatorOptions = {}): Promise<BrokerEmulator> {
  return startBrokerEmulator(opts);
}

/** IDENTITY_BROKER_* for `broker`, with a short rate-limit wait so 429 tests are quick. */
export function brokerEnv(broker: BrokerEmulator, key = DEFAULT_BROKER_KEY): Record<string, string> {
  return {
    IDENTITY_BROKER_ENDPOINT: broker.endpoint,
    IDENTITY_BROKER_API_KEY: key,
    IDENTITY_BROKER_RATE_LIMIT_WAIT: '0.05',
  };
}
