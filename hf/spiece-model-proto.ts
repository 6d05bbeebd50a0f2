// Reads the piece list out of a SentencePiece `.model` file (a serialized `ModelProto`).
// The wasm library exposes no vocabulary, and it happily "loads" files that are not models at all,
// so we parse the protobuf ourselves: it gives us id <-> piece and a second opinion on validity.

/** `ModelProto.SentencePiece.Type` (sentencepiece_model.proto). */
export const PieceType = {
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export interface SpPiece {
  piece: string;
  score: number;
  type: PieceType;
}

export interface SpModelProto {
  pieces: SpPiece[];
  /** `TrainerSpec.vocab_size`, when the file records it. */
  trainerVocabSize: number | undefined;
  hasTrainerSpec: boolean;
  hasNormalizerSpec: boolean;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

class ProtoReader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  // Numbers beyond 2^53 lose precision, which is fine: we only use tags, lengths and small ints.
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error(`varint runs past the end at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** Returns [start, end) of a length-delimited payload and moves past it. */
  lengthDelimited(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) {
      throw new Error(`field of ${len} bytes at byte ${start} runs past the end (${this.end})`);
    }
    this.pos = start + len;
    return [start, start + len];
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        // Groups (3, 4) are never used by sentencepiece; 6 and 7 do not exist.
        throw new Error(`unsupported wire type ${wire} at byte ${this.pos}`);
    }
  }

  advance(n: number): void {
    if (n > this.end - this.pos) throw new Error(`fixed field runs past the end at byte ${this.pos}`);
    this.pos += n;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readPiece(buf: Uint8Array, start: number, end: number): SpPiece {
  const r = new ProtoReader(buf, start, end);
  let piece: string | undefined;
  let score = 0;
  let type: PieceType = PieceType.Normal;
  while (!r.done()) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === WIRE_LEN) {
      const [s, e] = r.lengthDelimited();
      piece = utf8.decode(buf.subarray(s, e));
    } else if (field === 2 && wire === WIRE_FIXED32) {
      score = new DataView(buf.buffer, buf.byteOffset + r.pos, 4).getFloat32(0, true);
      r.advance(4);
    } else if (field === 3 && wire === WIRE_VARINT) {
      type = r.varint() as PieceType;
      if (type < PieceType.Normal || type > PieceType.Byte) throw new Error(`unknown piece type ${type}`);
    } else {
      r.skip(wire);
    }
  }
  if (piece === undefined) throw new Error(`a piece entry at byte ${start} has no text`);
  return { piece, score, type };
}

function readTrainerVocabSize(buf: Uint8Array, start: number, end: number): number | undefined {
  const r = new ProtoReader(buf, start, end);
  let vocabSize: number | undefined;
  while (!r.done()) {
    const tag = r.varint();
    if (tag === ((4 << 3) | WIRE_VARINT)) vocabSize = r.varint();
    else r.skip(tag & 7);
  }
  return vocabSize;
}

/**
 * Parses `ModelProto` fields 1 (pieces), 2 (trainer_spec) and 3 (normalizer_spec); other fields are skipped.
 * Throws an Error naming `label` (the file) on anything that is not well-formed protobuf of that shape.
 */
export function parseSentencePieceModel(buf: Uint8Array, label: string): SpModelProto {
  const pieces: SpPiece[] = [];
  let trainerVocabSize: number | undefined;
  let hasTrainerSpec = false;
  let hasNormalizerSpec = false;
  const r = new ProtoReader(buf, 0, buf.length);
  try {
    while (!r.done()) {
      const tag = r.varint();
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      if (field === 0) throw new Error(`field number 0 at byte ${r.pos}`);
      if (field <= 3 && wire !== WIRE_LEN) throw new Error(`field ${field} has wire type ${wire}, expected 2`);
      if (field === 1) {
        const [s, e] = r.lengthDelimited();
        pieces.push(readPiece(buf, s, e));
      } else if (field === 2) {
        const [s, e] = r.lengthDelimited();
        trainerVocabSize = readTrainerVocabSize(buf, s, e);
        hasTrainerSpec = true;
      } else if (field === 3) {
        r.lengthDelimited();
        hasNormalizerSpec = true;
      } else {
        r.skip(wire);
      }
    }
  } catch (err) {
    throw new Error(`${label}: not a SentencePiece model (bad protobuf: ${(err as Error).message})`);
  }
  return { pieces, trainerVocabSize, hasTrainerSpec, hasNormalizerSpec };
}
