import type { ByteBuffer } from 'flatbuffers';

/**
 * A flatbuffer whose offsets point outside the buffer, or whose file
 * identifier is not the expected one. `message` is a whole sentence naming the
 * file (e.g. `model.tflite is a corrupt TFLite model: ...`).
 */
export class FlatbufferFormatError extends Error {
  override readonly name = 'FlatbufferFormatError';
}

/**
 * Base of the table accessors in `tflite-model.ts` and `metadata.ts`, written
 * in the style of `flatc --ts` output (`bb`, `bb_pos`, `__init`, one method per
 * field reading its vtable slot through the `flatbuffers` runtime's
 * `__offset`, `__indirect`, `__vector`, `__vector_len` and `__string`).
 *
 * Unlike generated code it checks every table position and vector length
 * against the buffer's size before use, so a damaged file gives a
 * `FlatbufferFormatError` naming the field instead of garbage values or a loop
 * over a billion elements. Vtable slot N of a table is read at vtable offset
 * `4 + 2 * N` (the flatbuffers binary format: the vtable holds two uint16 sizes,
 * then one uint16 per field in schema order; a union field takes two slots,
 * its `_type` byte first).
 */
export abstract class FlatTable {
  bb: ByteBuffer | null = null;
  bb_pos = 0;
  /** What this buffer is, for error messages, e.g. `model.tflite` or `the TFLITE_METADATA buffer of model.tflite`. */
  protected source = '';
  /** What kind of file the buffer should be, for error messages, e.g. `TFLite model`. */
  protected kind = '';

  /** Points this accessor at the table starting at byte `i` of `bb`; throws FlatbufferFormatError when it lies outside. */
  __init(i: number, bb: ByteBuffer, source: string, kind: string): this {
    this.bb = bb;
    this.source = source;
    this.kind = kind;
    const capacity = bb.capacity();
    if (!Number.isInteger(i) || i < 0 || i + 4 > capacity) {
      throw this.corrupt(`a ${this.constructor.name} table at byte ${i}`, capacity);
    }
    const vtable = i - bb.readInt32(i);
    if (vtable < 0 || vtable + 4 > capacity) {
      throw this.corrupt(`the vtable of a ${this.constructor.name} table at byte ${i}`, capacity);
    }
    const vtableSize = bb.readUint16(vtable);
    if (vtableSize < 4 || vtable + vtableSize > capacity) {
      throw this.corrupt(`the vtable of a ${this.constructor.name} table at byte ${i}`, capacity);
    }
    this.bb_pos = i;
    return this;
  }

  /** Byte offset of the field in vtable slot `vtableOffset` from `bb_pos`, or 0 when the field is absent (default value). */
  protected __offset(vtableOffset: number): number {
    return this.bb!.__offset(this.bb_pos, vtableOffset);
  }

  /** Start and length of the vector field at `vtableOffset` (0 length when absent), checked to fit in the buffer. */
  protected vector(vtableOffset: number, elementSize: number, field: string): { start: number; length: number } {
    const offset = this.__offset(vtableOffset);
    if (!offset) return { start: 0, length: 0 };
    const bb = this.bb!;
    const at = this.bb_pos + offset;
    const capacity = bb.capacity();
    if (at + 4 > capacity) throw this.corrupt(`the vector ${field}`, capacity);
    const vectorPos = bb.__indirect(at);
    if (vectorPos < 0 || vectorPos + 4 > capacity) throw this.corrupt(`the vector ${field}`, capacity);
    const start = bb.__vector(at);
    const length = bb.__vector_len(at);
    if (length < 0 || start + length * elementSize > capacity) {
      throw this.corrupt(`the vector ${field} (${length} elements of ${elementSize} bytes at byte ${start})`, capacity);
    }
    return { start, length };
  }

  /** The string field at `vtableOffset`, or undefined when absent. */
  protected string(vtableOffset: number): string | undefined {
    const offset = this.__offset(vtableOffset);
    if (!offset) return undefined;
    const capacity = this.bb!.capacity();
    const at = this.bb_pos + offset;
    const pos = at + 4 <= capacity ? this.bb!.__indirect(at) : -1;
    if (pos < 0 || pos + 4 > capacity) throw this.corrupt(`a string field of a ${this.constructor.name} table`, capacity);
    return this.bb!.__string(at) as string;
  }

  /** Position of the sub-table stored in the field at `vtableOffset`, or 0 when absent. */
  protected table(vtableOffset: number): number {
    const offset = this.__offset(vtableOffset);
    if (!offset) return 0;
    const at = this.bb_pos + offset;
    if (at + 4 > this.bb!.capacity()) throw this.corrupt(`a table field of a ${this.constructor.name} table`, this.bb!.capacity());
    return this.bb!.__indirect(at);
  }

  /** Position of element `index` of a vector of tables (the vector holds uoffsets); throws RangeError past its end. */
  protected tableInVector(vector: { start: number; length: number }, index: number): number {
    if (!Number.isInteger(index) || index < 0 || index >= vector.length) {
      throw new RangeError(`index ${index} is outside a vector of ${vector.length} tables in ${this.source}`);
    }
    return this.bb!.__indirect(vector.start + index * 4);
  }

  /**
   * The `index`-th table of the vector-of-tables field at `vtableOffset`, as
   * an accessor of class `Table` (what flatc generates as `field(index)`).
   * @throws RangeError for an index outside the vector; FlatbufferFormatError when it lies outside the buffer.
   */
  protected tableAt<T extends FlatTable>(Table: new () => T, vtableOffset: number, field: string, index: number): T {
    const v = this.vector(vtableOffset, 4, field);
    return new Table().__init(this.tableInVector(v, index), this.bb!, this.source, this.kind);
  }

  protected corrupt(what: string, capacity: number): FlatbufferFormatError {
    return new FlatbufferFormatError(`${this.source} is a corrupt ${this.kind}: ${what} lies outside the ${capacity}-byte buffer`);
  }
}

/**
 * The 4-character file identifier of a flatbuffer (bytes 4..7), printable
 * characters as-is and others as `\xNN`, e.g. `TFL3`; `(none: N bytes)` when
 * the buffer is shorter than 8 bytes.
 */
export function fileIdentifier(bytes: Uint8Array): string {
  if (bytes.length < 8) return `(none: the data is only ${bytes.length} bytes long)`;
  let out = '';
  for (let i = 4; i < 8; i++) {
    const c = bytes[i]!;
    out += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return out;
}
