// Backend messages built by hand for in-process tests and benchmarks of the relay's handlers.

/** A message: type byte, int32 length, body. */
export function pgMessage(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([h, body]);
}

/** A RowDescription of computed columns (no table OID, so rules match them by name): [name, type OID]. */
export function rowDescription(cols: readonly (readonly [string, number])[]): Buffer {
  return pgMessage(
    0x54,
    Buffer.concat([
      Buffer.from([0, cols.length]),
      ...cols.map(([n, oid]) => {
        const b = Buffer.alloc(Buffer.byteLength(n) + 1 + 18);
        b.write(n);
        b.writeUInt32BE(oid, Buffer.byteLength(n) + 7);
        return b;
      }),
    ]),
  );
}

/** A DataRow; null is SQL NULL. */
export function dataRow(values: readonly (Buffer | string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([values.length >> 8, values.length & 255])];
  for (const v of values) {
    const b = v === null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v);
    const l = Buffer.alloc(4);
    l.writeInt32BE(b === null ? -1 : b.length);
    parts.push(l);
    if (b) parts.push(b);
  }
  return pgMessage(0x44, Buffer.concat(parts));
}
