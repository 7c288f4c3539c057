// Every protocol module Sluice ships. The core starts those with a listener in the config.
import type { ProtocolModule } from './kit/module.js';
import { postgres } from './postgres/index.js';
import { ssh } from './ssh/index.js';
import { httpModule } from './http/index.js';

export const protocolModules: ProtocolModule[] = [postgres, ssh, httpModule];
