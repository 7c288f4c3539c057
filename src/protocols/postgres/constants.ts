// Wire constants of the Postgres protocol (v3). https://www.postgresql.org/docs/current/protocol-message-formats.html

export const PROTOCOL_3_0 = 196608; // 3 << 16
/** The newest version Sluice speaks to clients: 3.2 (Postgres 18), whose only change is longer cancel keys. */
export const PROTOCOL_3_2 = 196610;
/** Secret key bytes Sluice gives clients of protocol 3.2 and later (what Postgres 18 sends). */
export const CANCEL_KEY_BYTES_3_2 = 32;
/** Longest cancel key a 3.2 CancelRequest may carry. */
export const MAX_CANCEL_KEY_BYTES = 256;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** Frontend message type bytes. */
export const F = {
  Bind: 0x42, // B
  Close: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Describe: 0x44, // D
  Execute: 0x45, // E
  Flush: 0x48, // H
  FunctionCall: 0x46, // F
  Parse: 0x50, // P
  Password: 0x70, // p (also SASLInitialResponse / SASLResponse)
  Query: 0x51, // Q
  Sync: 0x53, // S
  Terminate: 0x58, // X
} as const;

/** Backend message type bytes. */
export const B = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  CommandComplete: 0x43, // C
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  DataRow: 0x44, // D
  ErrorResponse: 0x45, // E
  NegotiateProtocolVersion: 0x76, // v
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterStatus: 0x53, // S
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const;

/** Frontend message types a client may send after startup. Anything else is a protocol violation. */
export const VALID_FRONTEND = new Uint8Array(256);
for (const t of Object.values(F)) VALID_FRONTEND[t] = 1;
