import { Builder } from 'flatbuffers';

/*
 * Writes small, real TFLite models (schema.fbs, file identifier TFL3) for the
 * shapes converters produce that the asset models do not cover: an input with
 * free height/width, class scores that are not the first output, an SSD
 * detection head. TFLite runs them (builtin MEAN and SOFTMAX). Field slots as
 * in tensorflow/lite/schema/schema.fbs (see src/inference/tflite-model.ts).
 */

/** BuiltinOperator values used here. */
const OP = { MEAN: 40, SOFTMAX: 25, CUSTOM: 32 } as const;
/** TensorType values used here. */
const TYPE = { FLOAT32: 0, INT32: 2, UINT8: 3 } as const;
/** BuiltinOptions union values used here. */
const OPTIONS = { SoftmaxOptions: 9, ReducerOptions: 27 } as const;

interface TensorSpec {
  readonly name: string;
  readonly shape: number[];
  readonly type: number;
  readonly shapeSignature?: number[];
  /** Constant data (little-endian bytes), e.g. the axes of MEAN. */
  readonly data?: Uint8Array;
  readonly quantization?: { scale: number; zeroPoint: number };
  /** Sparse storage (schema.fbs SparsityParameters); a dimension is dense ({denseSize}) or CSR ({segments, indices}, int32). */
  readonly sparsity?: {
    traversalOrder: number[];
    blockMap: number[];
    dims: Array<{ denseSize: number } | { segments: number[]; indices: number[] }>;
  };
}

interface OpSpec {
  readonly op: number;
  /** For OP.CUSTOM. */
  readonly custom?: string;
  readonly inputs: number[];
  readonly outputs: number[];
  /** MEAN: keep_dims; SOFTMAX: beta. */
  readonly keepDims?: boolean;
  readonly beta?: number;
}

interface ModelSpec {
  readonly tensors: TensorSpec[];
  readonly inputs: number[];
  readonly outputs: number[];
  readonly ops: OpSpec[];
}

/** Int32 values as little-endian bytes (for constant tensors). */
const int32Bytes = (values: number[]): Uint8Array => new Uint8Array(Int32Array.from(values).buffer);

/** Serializes `spec` into a .tflite file. */
function buildModel(spec: ModelSpec): Uint8Array {
  const b = new Builder(1024);
  const intVector = (xs: number[]): number => {
    b.startVector(4, xs.length, 4);
    for (let i = xs.length - 1; i >= 0; i--) b.addInt32(xs[i]!);
    return b.endVector();
  };
  // Buffers: 0 is the empty sentinel, then one per constant tensor.
  const bufferOffsets: number[] = [];
  const emptyBuffer = (): number => {
    b.startObject(1);
    return b.endObject();
  };
  bufferOffsets.push(emptyBuffer());
  const tensorBuffer = spec.tensors.map((t) => {
    if (!t.data) return 0;
    b.startVector(1, t.data.length, 16);
    for (let i = t.data.length - 1; i >= 0; i--) b.addInt8(t.data[i]!);
    const data = b.endVector();
    b.startObject(1);
    b.addFieldOffset(0, data, 0);
    bufferOffsets.push(b.endObject());
    return bufferOffsets.length - 1;
  });

  const codes: Array<{ op: number; custom?: string }> = [];
  const codeIndex = spec.ops.map((o) => {
    let i = codes.findIndex((c) => c.op === o.op && c.custom === o.custom);
    if (i < 0) i = codes.push({ op: o.op, ...(o.custom ? { custom: o.custom } : {}) }) - 1;
    return i;
  });

  const tensors = spec.tensors.map((t, i) => {
    const name = b.createString(t.name);
    const shape = intVector(t.shape);
    const sig = t.shapeSignature ? intVector(t.shapeSignature) : 0;
    let quant = 0;
    if (t.quantization) {
      b.startVector(4, 1, 4);
      b.addFloat32(t.quantization.scale);
      const scale = b.endVector();
      b.startVector(8, 1, 8);
      b.addInt64(BigInt(t.quantization.zeroPoint));
      const zp = b.endVector();
      b.startObject(7);
      b.addFieldOffset(2, scale, 0);
      b.addFieldOffset(3, zp, 0);
      quant = b.endObject();
    }
    let sparsity = 0;
    if (t.sparsity) {
      const int32Table = (xs: number[]): number => {
        const values = intVector(xs);
        b.startObject(1);
        b.addFieldOffset(0, values, 0);
        return b.endObject();
      };
      const dims = t.sparsity.dims.map((d) => {
        if ('denseSize' in d) {
          b.startObject(6);
          b.addFieldInt8(0, 0, -1);
          b.addFieldInt32(1, d.denseSize, -1);
          return b.endObject();
        }
        const segments = int32Table(d.segments);
        const indices = int32Table(d.indices);
        b.startObject(6);
        b.addFieldInt8(0, 1, -1); // SPARSE_CSR
        b.addFieldInt8(2, 1, 0); // Int32Vector
        b.addFieldOffset(3, segments, 0);
        b.addFieldInt8(4, 1, 0);
        b.addFieldOffset(5, indices, 0);
        return b.endObject();
      });
      const order = intVector(t.sparsity.traversalOrder);
      const blockMap = intVector(t.sparsity.blockMap);
      b.startVector(4, dims.length, 4);
      for (let i = dims.length - 1; i >= 0; i--) b.addOffset(dims[i]!);
      const dimVector = b.endVector();
      b.startObject(3);
      b.addFieldOffset(0, order, 0);
      b.addFieldOffset(1, blockMap, 0);
      b.addFieldOffset(2, dimVector, 0);
      sparsity = b.endObject();
    }
    b.startObject(8);
    b.addFieldOffset(0, shape, 0);
    b.addFieldInt8(1, t.type, -1); // always written, even FLOAT32 = 0
    b.addFieldInt32(2, tensorBuffer[i]!, -1);
    b.addFieldOffset(3, name, 0);
    if (quant) b.addFieldOffset(4, quant, 0);
    if (sparsity) b.addFieldOffset(6, sparsity, 0);
    if (sig) b.addFieldOffset(7, sig, 0);
    return b.endObject();
  });

  const operators = spec.ops.map((o, i) => {
    const ins = intVector(o.inputs);
    const outs = intVector(o.outputs);
    let optionsType = 0;
    let options = 0;
    if (o.op === OP.MEAN) {
      b.startObject(1);
      b.addFieldInt8(0, o.keepDims ? 1 : 0, -1);
      options = b.endObject();
      optionsType = OPTIONS.ReducerOptions;
    } else if (o.op === OP.SOFTMAX) {
      b.startObject(1);
      b.addFieldFloat32(0, o.beta ?? 1, -1);
      options = b.endObject();
      optionsType = OPTIONS.SoftmaxOptions;
    }
    b.startObject(5);
    b.addFieldInt32(0, codeIndex[i]!, -1);
    b.addFieldOffset(1, ins, 0);
    b.addFieldOffset(2, outs, 0);
    if (options) {
      b.addFieldInt8(3, optionsType, 0);
      b.addFieldOffset(4, options, 0);
    }
    return b.endObject();
  });

  const vectorOf = (offsets: number[]): number => {
    b.startVector(4, offsets.length, 4);
    for (let i = offsets.length - 1; i >= 0; i--) b.addOffset(offsets[i]!);
    return b.endVector();
  };
  const sgName = b.createString('main');
  const tensorsV = vectorOf(tensors);
  const inputsV = intVector(spec.inputs);
  const outputsV = intVector(spec.outputs);
  const opsV = vectorOf(operators);
  b.startObject(5);
  b.addFieldOffset(0, tensorsV, 0);
  b.addFieldOffset(1, inputsV, 0);
  b.addFieldOffset(2, outputsV, 0);
  b.addFieldOffset(3, opsV, 0);
  b.addFieldOffset(4, sgName, 0);
  const subgraph = b.endObject();

  const codeOffsets = codes.map((c) => {
    const custom = c.custom ? b.createString(c.custom) : 0;
    b.startObject(4);
    b.addFieldInt8(0, Math.min(c.op, 127), -1);
    if (custom) b.addFieldOffset(1, custom, 0);
    b.addFieldInt32(2, 1, -1);
    b.addFieldInt32(3, c.op, -1);
    return b.endObject();
  });
  const codesV = vectorOf(codeOffsets);
  const subgraphsV = vectorOf([subgraph]);
  const buffersV = vectorOf(bufferOffsets);
  const description = b.createString('built for tests');
  b.startObject(7);
  b.addFieldInt32(0, 3, -1);
  b.addFieldOffset(1, codesV, 0);
  b.addFieldOffset(2, subgraphsV, 0);
  b.addFieldOffset(3, description, 0);
  b.addFieldOffset(4, buffersV, 0);
  b.finish(b.endObject(), 'TFL3');
  return b.asUint8Array().slice();
}

/**
 * A classifier whose input has free height and width, as the converter writes
 * it for a Keras model without a fixed input size: shape [1,1,1,3],
 * shape_signature [1,-1,-1,3], float32; scores = softmax(mean over H and W)
 * → [1,3] float32.
 */
export function freeSizeClassifier(): Uint8Array {
  return buildModel({
    tensors: [
      { name: 'image', shape: [1, 1, 1, 3], shapeSignature: [1, -1, -1, 3], type: TYPE.FLOAT32 },
      { name: 'axes', shape: [2], type: TYPE.INT32, data: int32Bytes([1, 2]) },
      { name: 'mean', shape: [1, 3], type: TYPE.FLOAT32 },
      { name: 'scores', shape: [1, 3], type: TYPE.FLOAT32 },
    ],
    inputs: [0],
    outputs: [3],
    ops: [
      { op: OP.MEAN, inputs: [0, 1], outputs: [2] },
      { op: OP.SOFTMAX, inputs: [2], outputs: [3], beta: 1 },
    ],
  });
}

/**
 * A classifier with two outputs whose class scores are the second: output 0
 * `brightness` [1] (mean of all pixels), output 1 `scores` [1,3] (softmax of
 * the per-channel means). Input [1,8,8,3] float32.
 */
export function scoresSecondClassifier(): Uint8Array {
  return buildModel({
    tensors: [
      { name: 'image', shape: [1, 8, 8, 3], type: TYPE.FLOAT32 },
      { name: 'all_axes', shape: [3], type: TYPE.INT32, data: int32Bytes([1, 2, 3]) },
      { name: 'brightness', shape: [1], type: TYPE.FLOAT32 },
      { name: 'hw_axes', shape: [2], type: TYPE.INT32, data: int32Bytes([1, 2]) },
      { name: 'channel_means', shape: [1, 3], type: TYPE.FLOAT32 },
      { name: 'scores', shape: [1, 3], type: TYPE.FLOAT32 },
    ],
    inputs: [0],
    outputs: [2, 5],
    ops: [
      { op: OP.MEAN, inputs: [0, 1], outputs: [2] },
      { op: OP.MEAN, inputs: [0, 3], outputs: [4] },
      { op: OP.SOFTMAX, inputs: [4], outputs: [5], beta: 1 },
    ],
  });
}

/**
 * A tensor stored sparse, as the converter writes pruned weights (here the
 * model's input, so that input details show it): [4,4] float32, dimension 0
 * dense, dimension 1 CSR with segments [0,1,1,3,4] and indices [1,0,3,2].
 */
export function sparseInputModel(): Uint8Array {
  return buildModel({
    tensors: [
      {
        name: 'sparse',
        shape: [4, 4],
        type: TYPE.FLOAT32,
        sparsity: { traversalOrder: [0, 1], blockMap: [], dims: [{ denseSize: 4 }, { segments: [0, 1, 1, 3, 4], indices: [1, 0, 3, 2] }] },
      },
      { name: 'scores', shape: [1, 4], type: TYPE.FLOAT32 },
    ],
    inputs: [0],
    outputs: [1],
    ops: [],
  });
}

/**
 * The shape of an SSD detection model as the converter writes it: an image
 * input, then the custom op `TFLite_Detection_PostProcess` giving boxes
 * [1,10,4], classes [1,10], scores [1,10] and the count [1]. (Its head is
 * reduced to that one op: the daemon refuses it from the file.)
 */
export function ssdDetector(): Uint8Array {
  return buildModel({
    tensors: [
      { name: 'normalized_input_image_tensor', shape: [1, 300, 300, 3], type: TYPE.UINT8, quantization: { scale: 0.0078125, zeroPoint: 128 } },
      { name: 'TFLite_Detection_PostProcess', shape: [1, 10, 4], type: TYPE.FLOAT32 },
      { name: 'TFLite_Detection_PostProcess:1', shape: [1, 10], type: TYPE.FLOAT32 },
      { name: 'TFLite_Detection_PostProcess:2', shape: [1, 10], type: TYPE.FLOAT32 },
      { name: 'TFLite_Detection_PostProcess:3', shape: [1], type: TYPE.FLOAT32 },
    ],
    inputs: [0],
    outputs: [1, 2, 3, 4],
    ops: [{ op: OP.CUSTOM, custom: 'TFLite_Detection_PostProcess', inputs: [0], outputs: [1, 2, 3, 4] }],
  });
}
