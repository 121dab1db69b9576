import { ByteBuffer } from 'flatbuffers';
import yauzl from 'yauzl';
import type { Normalization } from '../core/types.js';
import { FlatbufferFormatError, FlatTable, fileIdentifier } from './flatbuffer-table.js';
import { parseLabels } from './labels.js';
import type { ModelMetadata, ModelProblem } from './model-info.js';

/*
 * Accessors for the TFLite Support metadata flatbuffer (namespace tflite,
 * file_identifier "M001", root_type ModelMetadata) defined in
 * `tensorflow_lite_support/metadata/metadata_schema.fbs` (formerly
 * `tensorflow/lite/experimental/support/metadata/metadata_schema.fbs`). The
 * model's `metadata` entry named TFLITE_METADATA points at the buffer holding
 * it. Slot numbers are field positions in each table, a union counting as two
 * slots (`<name>_type` byte, then the value); slot N is at vtable offset 4 + 2N.
 */

/** File identifier of the ModelMetadata flatbuffer (metadata_schema.fbs `file_identifier "M001"`). */
const METADATA_IDENTIFIER = 'M001';

/** `AssociatedFileType.TENSOR_AXIS_LABELS`: labels of the classes along an output axis, one per line. */
const TENSOR_AXIS_LABELS = 2;

/** `ProcessUnitOptions` union type value of `NormalizationOptions` (the first member; NONE is 0). */
const PROCESS_UNIT_NORMALIZATION_OPTIONS = 1;

/** Largest associated file this reader extracts (bytes); label files are kilobytes. */
const MAX_ASSOCIATED_FILE_BYTES = 16 * 1024 * 1024;

const KIND = 'TFLite metadata buffer';

/**
 * `table ModelMetadata` (root): slot 0 `name:string`, 1 `description:string`,
 * 2 `version:string`, 3 `subgraph_metadata:[SubGraphMetadata]`, 4 `author:string`,
 * 5 `license:string`, 6 `associated_files:[AssociatedFile]`, 7 `min_parser_version:string`.
 */
class MetaModelMetadata extends FlatTable {
  static getRootAsModelMetadata(bb: ByteBuffer, source: string): MetaModelMetadata {
    return new MetaModelMetadata().__init(bb.readInt32(bb.position()) + bb.position(), bb, source, KIND);
  }

  name(): string | undefined {
    return this.string(4);
  }

  description(): string | undefined {
    return this.string(6);
  }

  version(): string | undefined {
    return this.string(8);
  }

  subgraphMetadataLength(): number {
    return this.vector(10, 4, 'ModelMetadata.subgraph_metadata').length;
  }

  subgraphMetadata(index: number): MetaSubGraphMetadata {
    return this.tableAt(MetaSubGraphMetadata, 10, 'ModelMetadata.subgraph_metadata', index);
  }

  author(): string | undefined {
    return this.string(12);
  }

  license(): string | undefined {
    return this.string(14);
  }

  minParserVersion(): string | undefined {
    return this.string(18);
  }
}

/**
 * `table SubGraphMetadata`: slot 0 `name:string`, 1 `description:string`,
 * 2 `input_tensor_metadata:[TensorMetadata]`, 3 `output_tensor_metadata:[TensorMetadata]`,
 * 4 `associated_files`, 5 `input_process_units`, 6 `output_process_units`.
 */
class MetaSubGraphMetadata extends FlatTable {
  inputTensorMetadataLength(): number {
    return this.vector(8, 4, 'SubGraphMetadata.input_tensor_metadata').length;
  }

  inputTensorMetadata(index: number): MetaTensorMetadata {
    return this.tableAt(MetaTensorMetadata, 8, 'SubGraphMetadata.input_tensor_metadata', index);
  }

  outputTensorMetadataLength(): number {
    return this.vector(10, 4, 'SubGraphMetadata.output_tensor_metadata').length;
  }

  outputTensorMetadata(index: number): MetaTensorMetadata {
    return this.tableAt(MetaTensorMetadata, 10, 'SubGraphMetadata.output_tensor_metadata', index);
  }
}

/**
 * `table TensorMetadata`: slot 0 `name:string`, 1 `description:string`,
 * 2 `dimension_names:[string]`, 3 `content:Content`, 4 `process_units:[ProcessUnit]`,
 * 5 `stats:Stats`, 6 `associated_files:[AssociatedFile]`.
 */
class MetaTensorMetadata extends FlatTable {
  name(): string | undefined {
    return this.string(4);
  }

  processUnitsLength(): number {
    return this.vector(12, 4, 'TensorMetadata.process_units').length;
  }

  processUnits(index: number): MetaProcessUnit {
    return this.tableAt(MetaProcessUnit, 12, 'TensorMetadata.process_units', index);
  }

  associatedFilesLength(): number {
    return this.vector(16, 4, 'TensorMetadata.associated_files').length;
  }

  associatedFiles(index: number): MetaAssociatedFile {
    return this.tableAt(MetaAssociatedFile, 16, 'TensorMetadata.associated_files', index);
  }
}

/**
 * `table ProcessUnit`: the `options:ProcessUnitOptions` union, slot 0 `options_type`
 * (ubyte: 1 NormalizationOptions, 2 ScoreCalibrationOptions, 3 ScoreThresholdingOptions,
 * 4 BertTokenizerOptions, 5 SentencePieceTokenizerOptions) and slot 1 `options`.
 */
class MetaProcessUnit extends FlatTable {
  optionsType(): number {
    const o = this.__offset(4);
    return o ? this.bb!.readUint8(this.bb_pos + o) : 0;
  }

  /** The options as NormalizationOptions, or null when the union holds another type. */
  normalizationOptions(): MetaNormalizationOptions | null {
    if (this.optionsType() !== PROCESS_UNIT_NORMALIZATION_OPTIONS) return null;
    const pos = this.table(6);
    return pos ? new MetaNormalizationOptions().__init(pos, this.bb!, this.source, KIND) : null;
  }
}

/** `table NormalizationOptions`: slot 0 `mean:[float]`, 1 `std:[float]`; x = (value - mean) / std per channel. */
class MetaNormalizationOptions extends FlatTable {
  meanArray(): number[] {
    return this.floats(4, 'NormalizationOptions.mean');
  }

  stdArray(): number[] {
    return this.floats(6, 'NormalizationOptions.std');
  }

  private floats(vtableOffset: number, field: string): number[] {
    const v = this.vector(vtableOffset, 4, field);
    const out = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = this.bb!.readFloat32(v.start + i * 4);
    return out;
  }
}

/**
 * `table AssociatedFile`: slot 0 `name:string` (the file's name in the zip
 * archive appended to the model), 1 `description:string`, 2 `type:AssociatedFileType`
 * (byte; 2 = TENSOR_AXIS_LABELS), 3 `locale:string`.
 */
class MetaAssociatedFile extends FlatTable {
  name(): string | undefined {
    return this.string(4);
  }

  type(): number {
    const o = this.__offset(8);
    return o ? this.bb!.readInt8(this.bb_pos + o) : 0;
  }

  locale(): string | undefined {
    return this.string(10);
  }
}

/** What the metadata flatbuffer says, before the associated files are read. */
interface ParsedMetadata {
  readonly name?: string;
  readonly description?: string;
  readonly version?: string;
  readonly author?: string;
  readonly license?: string;
  readonly min_parser_version?: string;
  readonly normalization?: Normalization;
  /** Name of the first output's first TENSOR_AXIS_LABELS associated file. */
  readonly labels_file?: string;
}

/**
 * Parses a ModelMetadata flatbuffer (the TFLITE_METADATA buffer's bytes).
 * Normalization comes from the first subgraph's first input tensor's
 * NormalizationOptions process unit (mean and std as stored: one value for all
 * channels, or one per channel); the labels file name from the first output
 * tensor's first associated file of type TENSOR_AXIS_LABELS. Throws
 * FlatbufferFormatError when the identifier is not M001 or an offset points
 * outside the buffer.
 */
function parseMetadataBuffer(bytes: Uint8Array, source: string): ParsedMetadata {
  const found = fileIdentifier(bytes);
  if (found !== METADATA_IDENTIFIER) {
    throw new FlatbufferFormatError(
      `${source} is not a TFLite ModelMetadata flatbuffer: expected the identifier ${METADATA_IDENTIFIER} at byte 4, found ${JSON.stringify(found)}`,
    );
  }
  const root = MetaModelMetadata.getRootAsModelMetadata(new ByteBuffer(bytes), source);
  let normalization: Normalization | undefined;
  let labelsFile: string | undefined;
  if (root.subgraphMetadataLength() > 0) {
    const sg = root.subgraphMetadata(0);
    if (sg.inputTensorMetadataLength() > 0) {
      const input = sg.inputTensorMetadata(0);
      for (let i = 0; i < input.processUnitsLength() && !normalization; i++) {
        const n = input.processUnits(i).normalizationOptions();
        if (n) normalization = { mean: n.meanArray(), std: n.stdArray() };
      }
    }
    if (sg.outputTensorMetadataLength() > 0) {
      const output = sg.outputTensorMetadata(0);
      for (let i = 0; i < output.associatedFilesLength() && labelsFile === undefined; i++) {
        const file = output.associatedFiles(i);
        if (file.type() === TENSOR_AXIS_LABELS) labelsFile = file.name();
      }
    }
  }
  const strings = {
    name: root.name(),
    description: root.description(),
    version: root.version(),
    author: root.author(),
    license: root.license(),
    min_parser_version: root.minParserVersion(),
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(strings)) if (v !== undefined) out[k] = v;
  if (normalization) out.normalization = normalization;
  if (labelsFile !== undefined) out.labels_file = labelsFile;
  return out as ParsedMetadata;
}

/**
 * Lists the zip archive appended to a model file (the metadata populator
 * writes the associated files as a zip whose offsets are absolute in the
 * .tflite file) and reads the entries named in `wanted`. Returns null when the
 * file carries no zip archive. Entries larger than 16 MiB are not read.
 * Rejects with yauzl's error for a damaged archive.
 */
async function readAssociatedFiles(fileBytes: Uint8Array, wanted: readonly string[]): Promise<{ names: string[]; contents: Map<string, Buffer> } | null> {
  const buffer = Buffer.isBuffer(fileBytes) ? fileBytes : Buffer.from(fileBytes.buffer, fileBytes.byteOffset, fileBytes.byteLength);
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(buffer, { lazyEntries: true, validateEntrySizes: true });
  } catch (err) {
    if (/end of central directory record signature not found/i.test((err as Error).message)) return null;
    throw err;
  }
  const names: string[] = [];
  const contents = new Map<string, Buffer>();
  try {
    for (let entry = await nextEntry(zip); entry; entry = await nextEntry(zip)) {
      names.push(entry.fileName);
      if (!wanted.includes(entry.fileName) || entry.uncompressedSize > MAX_ASSOCIATED_FILE_BYTES) continue;
      const stream = await zip.openReadStreamPromise(entry);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      contents.set(entry.fileName, Buffer.concat(chunks));
    }
  } finally {
    zip.close();
  }
  return { names, contents };
}

/** The next entry of a zip opened with `lazyEntries`, or null after the last one. */
function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | null> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    const onEntry = (entry: yauzl.Entry): void => {
      cleanup();
      resolve(entry);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(null);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

/**
 * Reads a model's TFLite metadata: `metadataBytes` is the TFLITE_METADATA
 * buffer, `fileBytes` the whole model file (for the appended zip of associated
 * files), `path` names the model in messages. Labels come from the labels file
 * named by the metadata, one per line, trailing empty lines dropped.
 *
 * Never throws for a bad file: a malformed metadata buffer gives `metadata:
 * null` and a warning in `problems`; a labels file missing from the archive or
 * a damaged archive gives the metadata without labels and a warning.
 */
export async function readModelMetadata(
  metadataBytes: Uint8Array,
  fileBytes: Uint8Array,
  path: string,
): Promise<{ metadata: ModelMetadata | null; problems: ModelProblem[] }> {
  const problems: ModelProblem[] = [];
  let parsed: ParsedMetadata;
  try {
    parsed = parseMetadataBuffer(metadataBytes, `the TFLITE_METADATA buffer of ${path}`);
  } catch (err) {
    if (!(err instanceof FlatbufferFormatError) && !(err instanceof RangeError)) throw err;
    problems.push({ level: 'warning', message: `${err.message}; the metadata (labels, normalization) is ignored` });
    return { metadata: null, problems };
  }
  let associated: { names: string[]; contents: Map<string, Buffer> } | null = null;
  try {
    associated = await readAssociatedFiles(fileBytes, parsed.labels_file !== undefined ? [parsed.labels_file] : []);
  } catch (err) {
    problems.push({
      level: 'warning',
      message: `${path}: the zip archive of metadata files appended to the model is damaged (${(err as Error).message}); its files are ignored`,
    });
  }
  const { min_parser_version: _minParser, ...fields } = parsed;
  let labels: string[] | undefined;
  if (parsed.labels_file !== undefined && associated) {
    const content = associated.contents.get(parsed.labels_file);
    if (content) {
      labels = parseLabels(content.toString('utf8'), `${path} metadata (${parsed.labels_file})`, 'plain').entries.map((l) => l ?? '');
    } else {
      problems.push({
        level: 'warning',
        message: `${path}: the metadata names the labels file ${parsed.labels_file}, but the zip archive appended to the model ${associated.names.length ? `holds only ${associated.names.join(', ')}` : 'is empty'}`,
      });
    }
  } else if (parsed.labels_file !== undefined && !problems.length) {
    problems.push({
      level: 'warning',
      message: `${path}: the metadata names the labels file ${parsed.labels_file}, but no zip archive of metadata files is appended to the model`,
    });
  }
  return {
    metadata: {
      ...fields,
      ...(labels ? { labels } : {}),
      associated_files: associated?.names ?? [],
    },
    problems,
  };
}
