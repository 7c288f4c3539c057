// Every protocol Sluice listens for. A new protocol module adds its fuzzer here (see types.ts: FuzzProtocol).
import { postgres } from './postgres.js';
import { ssh } from './ssh.js';
import type { FuzzProtocol } from './types.js';

export const PROTOCOLS: FuzzProtocol[] = [postgres, ssh];
