// The data frames of an HTTP session's recording (README.md in this folder, "Recording format").

/** `u32 BE req ‖ u8 kind ‖ bytes`: a body frame of the recording (README). */
export function dataFrame(req: number, kind: number, bytes: Buffer): Buffer {
  const b = Buffer.allocUnsafe(5 + bytes.length);
  b.writeUInt32BE(req, 0);
  b[4] = kind;
  bytes.copy(b, 5);
  return b;
}
