// Why a protocol stopped reading a stream: one bit per reason, shared by every
// protocol, so a stream is resumed only when no reason is left (a drained
// destination never resumes a stream the recorder or an approval still holds).

/** The destination's write buffer is full (until 'drain'). */
export const HOLD_DRAIN = 1;
/** The recording store is behind: both sides slow to its pace, nothing is dropped. */
export const HOLD_RECORDER = 2;
/** An action waits for approval and the client has sent a lot behind it. */
export const HOLD_APPROVAL = 4;
/** The protocol's parser waits for I/O of its own (a catalog lookup). */
export const HOLD_IO = 8;
