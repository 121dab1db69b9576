import { readFile } from 'node:fs/promises';
import { ByteBuffer } from 'flatbuffers';
import { unreadableFileError } from '../core/errors.js';
import type { DType, QuantizationParameters, SparsityParameters, TensorDetails } from '../core/types.js';
import { FlatbufferFormatError, FlatTable, fileIdentifier } from './flatbuffer-table.js';
import { readModelMetadata } from './metadata.js';
import type { ModelInfo, ModelProblem } from './model-info.js';

/*
 * Accessors for the few tables of TensorFlow Lite's model flatbuffer that the
 * daemon needs, in the style of `flatc --ts` output. Slot numbers come from
 * `tensorflow/lite/schema/schema.fbs` (namespace tflite, file_identifier
 * "TFL3", root_type Model): a field's slot is its position in the table's
 * field list, counting a union as two slots (`<name>_type`, then the value),
 * and it is read at vtable offset 4 + 2 * slot.
 */

/** File identifier of TFLite model flatbuffers (schema.fbs `file_identifier "TFL3"`), at bytes 4..7. */
const TFLITE_IDENTIFIER = 'TFL3';

/** `BuiltinOperator.CUSTOM` in schema.fbs: the operator is identified by `OperatorCode.custom_code`. */
const BUILTIN_CUSTOM = 32;

/** `custom_code` of the single operator that edgetpu_compiler puts in place of the part of the graph it compiled. */
export const EDGETPU_CUSTOM_OP = 'edgetpu-custom-op';

/** Name of the `Model.metadata` entry whose buffer holds the TFLite Support `ModelMetadata` flatbuffer. */
const TFLITE_METADATA = 'TFLITE_METADATA';

/** Name of the `Model.metadata` entry the converter writes with the minimum TFLite runtime version (a NUL-padded string). */
const MIN_RUNTIME_VERSION = 'min_runtime_version';

/** `TensorType` enum of schema.fbs (byte), indexed by value, in the lower-case names of `DType`. */
export const TENSOR_TYPES: readonly DType[] = [
  'float32', // FLOAT32 = 0
  'float16', // FLOAT16 = 1
  'int32', // INT32 = 2
  'uint8', // UINT8 = 3
  'int64', // INT64 = 4
  'string', // STRING = 5
  'bool', // BOOL = 6
  'int16', // INT16 = 7
  'complex64', // COMPLEX64 = 8
  'int8', // INT8 = 9
  'float64', // FLOAT64 = 10
  'complex128', // COMPLEX128 = 11
  'uint64', // UINT64 = 12
  'resource', // RESOURCE = 13
  'variant', // VARIANT = 14
  'uint32', // UINT32 = 15
  'uint16', // UINT16 = 16
  'int4', // INT4 = 17
];

/**
 * `table Model` (the root):
 * slot 0 `version:uint`, 1 `operator_codes:[OperatorCode]`, 2 `subgraphs:[SubGraph]`,
 * 3 `description:string`, 4 `buffers:[Buffer]`, 5 `metadata_buffer:[int]`,
 * 6 `metadata:[Metadata]`, 7 `signature_defs:[SignatureDef]` (not read).
 */
export class TflModel extends FlatTable {
  /** Reads the root table of a model flatbuffer; the caller checks the identifier first. */
  static getRootAsModel(bb: ByteBuffer, source: string): TflModel {
    return new TflModel().__init(bb.readInt32(bb.position()) + bb.position(), bb, source, 'TFLite model');
  }

  /** True when bytes 4..7 are `TFL3`. */
  static bufferHasIdentifier(bb: ByteBuffer): boolean {
    return bb.__has_identifier(TFLITE_IDENTIFIER);
  }

  /** Schema version (slot 0, uint32, default 0); 3 for every current converter. */
  version(): number {
    const o = this.__offset(4);
    return o ? this.bb!.readUint32(this.bb_pos + o) : 0;
  }

  operatorCodesLength(): number {
    return this.vector(6, 4, 'Model.operator_codes').length;
  }

  operatorCodes(index: number): TflOperatorCode {
    return this.tableAt(TflOperatorCode, 6, 'Model.operator_codes', index);
  }

  subgraphsLength(): number {
    return this.vector(8, 4, 'Model.subgraphs').length;
  }

  subgraphs(index: number): TflSubGraph {
    return this.tableAt(TflSubGraph, 8, 'Model.subgraphs', index);
  }

  /** Slot 3; converters write e.g. `MLIR Converted.` or `TOCO Converted.`. */
  description(): string | undefined {
    return this.string(10);
  }

  buffersLength(): number {
    return this.vector(12, 4, 'Model.buffers').length;
  }

  buffers(index: number): TflBuffer {
    return this.tableAt(TflBuffer, 12, 'Model.buffers', index);
  }

  metadataLength(): number {
    return this.vector(16, 4, 'Model.metadata').length;
  }

  metadata(index: number): TflMetadata {
    return this.tableAt(TflMetadata, 16, 'Model.metadata', index);
  }
}

/**
 * `table OperatorCode`: slot 0 `deprecated_builtin_code:byte`, 1 `custom_code:string`,
 * 2 `version:int = 1`, 3 `builtin_code:BuiltinOperator` (int32, added when the byte
 * ran out at 127).
 */
class TflOperatorCode extends FlatTable {
  deprecatedBuiltinCode(): number {
    const o = this.__offset(4);
    return o ? this.bb!.readInt8(this.bb_pos + o) : 0;
  }

  customCode(): string | undefined {
    return this.string(6);
  }

  version(): number {
    const o = this.__offset(8);
    return o ? this.bb!.readInt32(this.bb_pos + o) : 1;
  }

  builtinCodeField(): number {
    const o = this.__offset(10);
    return o ? this.bb!.readInt32(this.bb_pos + o) : 0;
  }

  /**
   * The operator's BuiltinOperator value: the larger of `deprecated_builtin_code`
   * and `builtin_code`, as TFLite's `GetBuiltinCode()` (schema_utils.cc) does, since
   * old files set only the byte and new files set both (the byte capped at 127).
   */
  builtinCode(): number {
    return Math.max(this.deprecatedBuiltinCode(), this.builtinCodeField());
  }
}

/**
 * `table SubGraph`: slot 0 `tensors:[Tensor]`, 1 `inputs:[int]`, 2 `outputs:[int]`,
 * 3 `operators:[Operator]`, 4 `name:string`.
 */
class TflSubGraph extends FlatTable {
  tensorsLength(): number {
    return this.vector(4, 4, 'SubGraph.tensors').length;
  }

  tensors(index: number): TflTensor {
    return this.tableAt(TflTensor, 4, 'SubGraph.tensors', index);
  }

  /** Indices into `tensors` of the subgraph's inputs. */
  inputsArray(): number[] {
    return readInt32Vector(this, this.vector(6, 4, 'SubGraph.inputs'));
  }

  /** Indices into `tensors` of the subgraph's outputs. */
  outputsArray(): number[] {
    return readInt32Vector(this, this.vector(8, 4, 'SubGraph.outputs'));
  }

  operatorsLength(): number {
    return this.vector(10, 4, 'SubGraph.operators').length;
  }

  /** The `index`-th operator, in execution order. */
  operators(index: number): TflOperator {
    return this.tableAt(TflOperator, 10, 'SubGraph.operators', index);
  }

  name(): string | undefined {
    return this.string(12);
  }
}

/**
 * `table Operator`: slot 0 `opcode_index:uint` (into `Model.operator_codes`),
 * 1 `inputs:[int]` and 2 `outputs:[int]` (tensor indices, -1 for an omitted
 * optional input); the builtin and custom options that follow are not read.
 */
class TflOperator extends FlatTable {
  opcodeIndex(): number {
    const o = this.__offset(4);
    return o ? this.bb!.readUint32(this.bb_pos + o) : 0;
  }

  inputsArray(): number[] {
    return readInt32Vector(this, this.vector(6, 4, 'Operator.inputs'));
  }

  outputsArray(): number[] {
    return readInt32Vector(this, this.vector(8, 4, 'Operator.outputs'));
  }
}

/**
 * `table Tensor`: slot 0 `shape:[int]`, 1 `type:TensorType` (byte), 2 `buffer:uint`,
 * 3 `name:string`, 4 `quantization:QuantizationParameters`, 5 `is_variable:bool`,
 * 6 `sparsity:SparsityParameters`, 7 `shape_signature:[int]` (-1 for dynamic
 * dimensions; absent in most image classifiers), 8 `has_rank:bool`,
 * 9 `variant_tensors`.
 */
class TflTensor extends FlatTable {
  shapeArray(): number[] {
    return readInt32Vector(this, this.vector(4, 4, 'Tensor.shape'));
  }

  /** TensorType value (slot 1, byte, default FLOAT32 = 0). */
  type(): number {
    const o = this.__offset(6);
    return o ? this.bb!.readInt8(this.bb_pos + o) : 0;
  }

  buffer(): number {
    const o = this.__offset(8);
    return o ? this.bb!.readUint32(this.bb_pos + o) : 0;
  }

  name(): string | undefined {
    return this.string(10);
  }

  quantization(): TflQuantizationParameters | null {
    const pos = this.table(12);
    return pos ? new TflQuantizationParameters().__init(pos, this.bb!, this.source, this.kind) : null;
  }

  /** `sparsity` (slot 6), or null for a dense tensor. */
  sparsity(): TflSparsityParameters | null {
    const pos = this.table(16);
    return pos ? new TflSparsityParameters().__init(pos, this.bb!, this.source, this.kind) : null;
  }

  /** `shape_signature` (slot 7), or null when the converter did not write it. */
  shapeSignatureArray(): number[] | null {
    if (!this.__offset(18)) return null;
    return readInt32Vector(this, this.vector(18, 4, 'Tensor.shape_signature'));
  }
}

/**
 * `table QuantizationParameters` (real = scale * (q - zero_point)):
 * slot 0 `min:[float]`, 1 `max:[float]`, 2 `scale:[float]`, 3 `zero_point:[long]`,
 * 4 `details_type` and 5 `details` (the QuantizationDetails union, two slots),
 * 6 `quantized_dimension:int`.
 */
class TflQuantizationParameters extends FlatTable {
  scaleArray(): number[] {
    const v = this.vector(8, 4, 'QuantizationParameters.scale');
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = this.bb!.readFloat32(v.start + i * 4);
    return out;
  }

  /** `zero_point` values (int64 in the file), as numbers: they are small integers in practice. */
  zeroPointArray(): number[] {
    const v = this.vector(10, 8, 'QuantizationParameters.zero_point');
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = Number(this.bb!.readInt64(v.start + i * 8));
    return out;
  }

  quantizedDimension(): number {
    const o = this.__offset(16);
    return o ? this.bb!.readInt32(this.bb_pos + o) : 0;
  }
}

/**
 * `table SparsityParameters`: slot 0 `traversal_order:[int]`, 1 `block_map:[int]`,
 * 2 `dim_metadata:[DimensionMetadata]`.
 */
class TflSparsityParameters extends FlatTable {
  traversalOrder(): number[] {
    return readInt32Vector(this, this.vector(4, 4, 'SparsityParameters.traversal_order'));
  }

  blockMap(): number[] {
    return readInt32Vector(this, this.vector(6, 4, 'SparsityParameters.block_map'));
  }

  dimMetadataLength(): number {
    return this.vector(8, 4, 'SparsityParameters.dim_metadata').length;
  }

  dimMetadata(index: number): TflDimensionMetadata {
    return this.tableAt(TflDimensionMetadata, 8, 'SparsityParameters.dim_metadata', index);
  }
}

/**
 * `table DimensionMetadata`: slot 0 `format:DimensionType` (byte: DENSE 0,
 * SPARSE_CSR 1), 1 `dense_size:int`, 2-3 `array_segments:SparseIndexVector`,
 * 4-5 `array_indices:SparseIndexVector` (unions of Int32Vector 1,
 * Uint16Vector 2, Uint8Vector 3, each a table with `values` at slot 0).
 */
class TflDimensionMetadata extends FlatTable {
  format(): number {
    const o = this.__offset(4);
    return o ? this.bb!.readInt8(this.bb_pos + o) : 0;
  }

  denseSize(): number {
    const o = this.__offset(6);
    return o ? this.bb!.readInt32(this.bb_pos + o) : 0;
  }

  arraySegments(): number[] {
    return this.indexVector(8, 10);
  }

  arrayIndices(): number[] {
    return this.indexVector(12, 14);
  }

  private indexVector(typeOffset: number, valueOffset: number): number[] {
    const t = this.__offset(typeOffset);
    const type = t ? this.bb!.readUint8(this.bb_pos + t) : 0;
    const pos = this.table(valueOffset);
    if (!pos || type < 1 || type > 3) return [];
    return new TflSparseIndexVector().__init(pos, this.bb!, this.source, this.kind).values(type);
  }
}

/** `table Int32Vector` / `Uint16Vector` / `Uint8Vector`: slot 0 `values`, of the element type the union's type (1, 2, 3) says. */
class TflSparseIndexVector extends FlatTable {
  values(type: number): number[] {
    const size = type === 1 ? 4 : type === 2 ? 2 : 1;
    const v = this.vector(4, size, 'SparseIndexVector.values');
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) {
      out[i] = type === 1 ? this.bb!.readInt32(v.start + i * 4) : type === 2 ? this.bb!.readUint16(v.start + i * 2) : this.bb!.readUint8(v.start + i);
    }
    return out;
  }
}

/**
 * `table Buffer`: slot 0 `data:[ubyte]`, 1 `offset:ulong`, 2 `size:ulong` (models over
 * 2 GB keep data outside the flatbuffer, at `offset` from the start of the file).
 */
class TflBuffer extends FlatTable {
  /** A view (no copy) of the buffer's bytes inside the model file; empty when the buffer holds nothing. */
  dataArray(): Uint8Array {
    const v = this.vector(4, 1, 'Buffer.data');
    if (v.length > 0) return this.bb!.bytes().subarray(v.start, v.start + v.length);
    const offset = this.ulong(6);
    const size = this.ulong(8);
    const bytes = this.bb!.bytes();
    if (offset > 1 && size > 0) {
      if (offset + size > bytes.length) throw this.corrupt(`a Buffer at file offset ${offset} (${size} bytes)`, bytes.length);
      return bytes.subarray(offset, offset + size);
    }
    return bytes.subarray(0, 0);
  }

  private ulong(vtableOffset: number): number {
    const o = this.__offset(vtableOffset);
    return o ? Number(this.bb!.readUint64(this.bb_pos + o)) : 0;
  }
}

/** `table Metadata`: slot 0 `name:string`, 1 `buffer:uint` (an index into `Model.buffers`). */
class TflMetadata extends FlatTable {
  name(): string | undefined {
    return this.string(4);
  }

  buffer(): number {
    const o = this.__offset(6);
    return o ? this.bb!.readUint32(this.bb_pos + o) : 0;
  }
}

function readInt32Vector(table: FlatTable, v: { start: number; length: number }): number[] {
  const out = new Array<number>(v.length);
  for (let i = 0; i < v.length; i++) out[i] = table.bb!.readInt32(v.start + i * 4);
  return out;
}

/**
 * Reads a .tflite file and describes it: see `parseModel`.
 * Throws the file system's error (ENOENT ...) with the path, or FlatbufferFormatError.
 */
export async function readModelInfo(path: string): Promise<ModelInfo> {
  return (await readModelFile(path)).info;
}

/**
 * Reads a .tflite file: its bytes (for the interpreter) and their description.
 * Throws as `readModelInfo`.
 */
export async function readModelFile(path: string): Promise<{ bytes: Buffer; info: ModelInfo }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw unreadableFileError('the model file', path, err);
  }
  return { bytes, info: await parseModel(bytes, path) };
}

/**
 * Describes a TFLite model from its bytes (the whole .tflite file, including any
 * zip archive of metadata files appended to it): for the main subgraph's input
 * and output tensors their name, index, shape (e.g. `[1,224,224,3]`),
 * shape_signature (-1 for dynamic dimensions; equal to shape when the file has
 * none), dtype, per-tensor quantization `[scale, zero_point]` (`[0, 0]` when not
 * quantized or quantized per axis, as TFLite's Python `get_input_details()`
 * reports) and the full quantization parameters; the schema version; the
 * description; custom operator names; whether it needs the Edge TPU; and the
 * TFLite metadata (see `readModelMetadata`), whose problems are returned in
 * `problems` rather than thrown.
 *
 * `path` is only used in messages. Throws FlatbufferFormatError with the
 * sentence `<path> is not a TFLite model: expected the identifier TFL3 at byte 4,
 * found ...` when the identifier is wrong, and `<path> is a corrupt TFLite
 * model: ...` when an offset points outside the file.
 */
export async function parseModel(bytes: Uint8Array, path: string): Promise<ModelInfo> {
  const found = fileIdentifier(bytes);
  if (found !== TFLITE_IDENTIFIER) {
    throw new FlatbufferFormatError(`${path} is not a TFLite model: expected the identifier ${TFLITE_IDENTIFIER} at byte 4, found ${JSON.stringify(found)}`);
  }
  const bb = new ByteBuffer(bytes);
  const model = TflModel.getRootAsModel(bb, path);
  if (model.subgraphsLength() < 1) {
    throw new FlatbufferFormatError(`${path} is a corrupt TFLite model: it has no subgraph`);
  }
  const subgraph = model.subgraphs(0);
  const tensorCount = subgraph.tensorsLength();
  const details = (index: number, role: string): TensorDetails => {
    if (index < 0 || index >= tensorCount) {
      throw new FlatbufferFormatError(`${path} is a corrupt TFLite model: its ${role} refers to tensor ${index} but the subgraph has ${tensorCount} tensors`);
    }
    return tensorDetails(subgraph.tensors(index), index, path);
  };
  const inputs = subgraph.inputsArray().map((i, n) => details(i, `input ${n}`));
  const outputs = subgraph.outputsArray().map((i, n) => details(i, `output ${n}`));

  const customOps: string[] = [];
  for (let i = 0; i < model.operatorCodesLength(); i++) {
    const code = model.operatorCodes(i);
    const custom = code.customCode();
    if (code.builtinCode() === BUILTIN_CUSTOM && custom !== undefined && !customOps.includes(custom)) customOps.push(custom);
  }

  const problems: ModelProblem[] = [];
  let metadataBytes: Uint8Array | null = null;
  let minRuntimeVersion: string | undefined;
  const bufferCount = model.buffersLength();
  for (let i = 0; i < model.metadataLength(); i++) {
    const entry = model.metadata(i);
    const name = entry.name();
    if (name !== TFLITE_METADATA && name !== MIN_RUNTIME_VERSION) continue;
    const index = entry.buffer();
    if (index >= bufferCount) {
      problems.push({
        level: 'warning',
        message: `${path}: the metadata entry ${name} refers to buffer ${index} but the model has ${bufferCount} buffers`,
      });
      continue;
    }
    const data = model.buffers(index).dataArray();
    if (name === TFLITE_METADATA) metadataBytes = data;
    else minRuntimeVersion = new TextDecoder().decode(data).replace(/\0.*$/s, '');
  }

  let metadata = null;
  if (metadataBytes) {
    const result = await readModelMetadata(metadataBytes, bytes, path);
    metadata = result.metadata;
    problems.push(...result.problems);
  }

  const description = model.description();
  return {
    path,
    size_bytes: bytes.length,
    version: model.version(),
    ...(description !== undefined ? { description } : {}),
    inputs,
    outputs,
    metadata,
    custom_ops: customOps,
    requires_edgetpu: customOps.includes(EDGETPU_CUSTOM_OP),
    ...(minRuntimeVersion !== undefined ? { min_runtime_version: minRuntimeVersion } : {}),
    problems,
  };
}

/** Input/output details of one tensor, as TFLite's Python `get_input_details()` reports them. */
function tensorDetails(tensor: TflTensor, index: number, path: string): TensorDetails {
  const typeCode = tensor.type();
  const dtype = TENSOR_TYPES[typeCode];
  const name = tensor.name() ?? '';
  if (dtype === undefined) {
    throw new FlatbufferFormatError(
      `${path}: tensor '${name}' (index ${index}) has TensorType ${typeCode}, which this reader does not know (schema.fbs defines 0..${TENSOR_TYPES.length - 1})`,
    );
  }
  const shape = tensor.shapeArray();
  const q = tensor.quantization();
  const params: QuantizationParameters = q
    ? { scales: q.scaleArray(), zero_points: q.zeroPointArray(), quantized_dimension: q.quantizedDimension() }
    : { scales: [], zero_points: [], quantized_dimension: 0 };
  const perTensor = params.scales.length === 1 && params.zero_points.length === 1;
  const sp = tensor.sparsity();
  const sparsity: SparsityParameters | Record<string, never> = sp
    ? {
        traversal_order: sp.traversalOrder(),
        block_map: sp.blockMap(),
        dim_metadata: Array.from({ length: sp.dimMetadataLength() }, (_, i) => {
          const d = sp.dimMetadata(i);
          return d.format() === 0
            ? { format: 0, dense_size: d.denseSize() }
            : { format: d.format(), array_segments: d.arraySegments(), array_indices: d.arrayIndices() };
        }),
      }
    : {};
  return {
    name,
    index,
    shape,
    shape_signature: tensor.shapeSignatureArray() ?? shape.slice(),
    dtype,
    quantization: perTensor ? [params.scales[0]!, params.zero_points[0]!] : [0, 0],
    quantization_parameters: params,
    sparsity_parameters: sparsity,
  };
}
