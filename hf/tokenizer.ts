// T5 tokenizer: SentencePiece (wasm, @agnai/sentencepiece-js) plus the rules Hugging Face's slow
// `T5Tokenizer` (legacy mode, transformers 4.36) adds on top: `</s>` appended, sentinel `<extra_id_N>`
// tokens beyond the piece list, special tokens split out of the text, only_first truncation.
// No text cleaning happens here: lowercasing or whitespace collapsing belongs to the data pipeline.

import { readFileSync, statSync } from 'node:fs';
import sentencepiece from '@agnai/sentencepiece-js';
import type { SentencePieceProcessor as SpProcessor } from '@agnai/sentencepiece-js';
import { parseSentencePieceModel, PieceType, type SpPiece } from './spiece-model-proto.ts';
import { registerSpieceFile } from './spiece-memory-files.ts';

export interface T5TokenizerOptions {
  /** Number of `<extra_id_N>` sentinels after the pieces (HF default 100). */
  extraIds?: number;
  /**
   * Rows of the model's embedding (config `vocab_size`, 32128 for t5-small). Ids between
   * pieceCount + extraIds and this are unused rows: valid model outputs, but without text.
   * Default pieceCount + extraIds.
   */
  vocabSize?: number;
  /** HF's clean_up_tokenization_spaces (tokenizer_config.json): decode turns " ." into "." and the like (see
   * cleanUpTokenizationSpaces). Default false, transformers' default since 4.45 when the file does not say. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface EncodeOptions {
  /** Truncate (HF `truncation='only_first'`) so the result, `</s>` included, fits this length. */
  maxLength?: number;
}

export interface DecodeOptions {
  /** Drop `<pad>`, `</s>`, `<unk>` and `<extra_id_N>` (default true). When false they are written out as HF does. */
  skipSpecialTokens?: boolean;
  /** Default: the tokenizer's (T5TokenizerOptions.cleanUpTokenizationSpaces). */
  cleanUpTokenizationSpaces?: boolean;
}

/** HF's clean_up_tokenization: spaces before punctuation and English contractions, in its order. */
export function cleanUpTokenizationSpaces(s: string): string {
  return s.replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',').replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s").replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

// Python's str.isspace set, not JS's \s: HF strips sentinel neighbours with str.lstrip/rstrip.
const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_LEADING_SPACE = new RegExp(`^${PY_SPACE}+`);
const PY_TRAILING_SPACE = new RegExp(`${PY_SPACE}+$`);
const pyLstrip = (s: string): string => s.replace(PY_LEADING_SPACE, '');
const pyRstrip = (s: string): string => s.replace(PY_TRAILING_SPACE, '');
const pyStrip = (s: string): string => pyRstrip(pyLstrip(s));

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A piece of input text after splitting out special tokens: plain text, or a special token's id. */
type Segment = { text: string } | { id: number; stripsNeighbours: boolean };

export class T5Tokenizer {
  readonly padTokenId = 0;
  readonly eosTokenId = 1;
  readonly unkTokenId = 2;

  /** Number of pieces in the .model file; ids below it are SentencePiece ids. */
  readonly pieceCount: number;
  readonly extraIds: number;
  /** Embedding rows; every id the model can produce is below it. */
  readonly vocabSize: number;

  private readonly specialIdByText = new Map<string, number>();
  private readonly specialPattern: RegExp;
  private readonly idByPiece = new Map<string, number>();

  private constructor(
    readonly path: string,
    private readonly sp: SpProcessor,
    private readonly pieces: readonly SpPiece[],
    extraIds: number,
    vocabSize: number,
    readonly cleanUpSpaces: boolean,
  ) {
    this.pieceCount = pieces.length;
    this.extraIds = extraIds;
    this.vocabSize = vocabSize;
    for (let i = 0; i < pieces.length; i++) {
      // First occurrence wins, as in sentencepiece's own piece map.
      if (!this.idByPiece.has(pieces[i]!.piece)) this.idByPiece.set(pieces[i]!.piece, i);
    }
    for (const id of [this.padTokenId, this.eosTokenId, this.unkTokenId]) {
      this.specialIdByText.set(pieces[id]!.piece, id);
    }
    for (let n = 0; n < extraIds; n++) this.specialIdByText.set(extraIdToken(n), this.extraId(n));
    // Longest first, so that no token can shadow a longer one that starts with it.
    const alternatives = [...this.specialIdByText.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.specialPattern = new RegExp(alternatives.join('|'), 'g');
  }

  /** Loads a SentencePiece `.model` file; throws an Error naming the file if it is missing or not a usable model. */
  static async load(spieceModelPath: string, opts: T5TokenizerOptions = {}): Promise<T5Tokenizer> {
    const path = spieceModelPath;
    let bytes: Uint8Array;
    try {
      if (!statSync(path).isFile()) throw new Error('not a regular file');
      bytes = readFileSync(path);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
      throw new Error(`T5Tokenizer: cannot read SentencePiece model ${path}: ${reason}`);
    }
    return T5Tokenizer.fromBytes(bytes, path, opts);
  }

  /**
   * A tokenizer from the bytes of a SentencePiece `.model`; `path` names them in errors. sentencepiece-js reads its
   * model with `fs.readFileSync(path)`: in Node that is the file at `path` (so pass the path the bytes came from);
   * a web page's bundle gives it spiece-memory-files.ts as `fs`, which returns the bytes registered here.
   */
  static async fromBytes(bytes: Uint8Array, path: string, opts: T5TokenizerOptions = {}): Promise<T5Tokenizer> {
    if (bytes.length === 0) throw new Error(`T5Tokenizer: ${path}: not a SentencePiece model (the file is empty)`);

    const proto = parseSentencePieceModel(bytes, `T5Tokenizer: ${path}`);
    const pieces = proto.pieces;
    if (pieces.length === 0) throw new Error(`T5Tokenizer: ${path}: not a SentencePiece model (no pieces)`);
    // Protobuf writes fields in number order, so a file cut at a piece boundary parses cleanly
    // but lacks the specs that follow the pieces.
    if (!proto.hasTrainerSpec || !proto.hasNormalizerSpec) {
      throw new Error(
        `T5Tokenizer: ${path}: incomplete SentencePiece model (${pieces.length} pieces, ` +
          `no ${proto.hasTrainerSpec ? 'normalizer_spec' : 'trainer_spec'}): truncated file?`,
      );
    }
    checkT5Layout(pieces, path);

    const extraIds = opts.extraIds ?? 100;
    if (!Number.isInteger(extraIds) || extraIds < 0) {
      throw new RangeError(`T5Tokenizer: extraIds must be a non-negative integer, got ${extraIds}`);
    }
    const vocabSize = opts.vocabSize ?? pieces.length + extraIds;
    if (!Number.isInteger(vocabSize) || vocabSize < pieces.length + extraIds) {
      throw new RangeError(
        `T5Tokenizer: vocabSize ${vocabSize} is smaller than ${pieces.length} pieces in ${path} ` +
          `+ ${extraIds} extra ids`,
      );
    }

    const sp = new sentencepiece.SentencePieceProcessor();
    registerSpieceFile(path, bytes);
    await sp.load(path);
    const status = sp.processor.status();
    const statusText = status.ToString();
    status.delete();
    if (statusText !== 'OK') {
      throw new Error(`T5Tokenizer: ${path}: sentencepiece refused the model: ${statusText}`);
    }
    checkLibraryAgrees(sp, pieces, path);
    return new T5Tokenizer(path, sp, pieces, extraIds, vocabSize, opts.cleanUpTokenizationSpaces ?? false);
  }

  /** Id of `<extra_id_n>`: the sentinels count down from the top of the HF vocabulary. */
  extraId(n: number): number {
    if (!Number.isInteger(n) || n < 0 || n >= this.extraIds) {
      throw new RangeError(`T5Tokenizer: no <extra_id_${n}> (this tokenizer has ${this.extraIds} extra ids)`);
    }
    return this.pieceCount + this.extraIds - 1 - n;
  }

  /** `ids(text) + [</s>]`, as HF's `tokenizer(text).input_ids`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    let ids = this.textToIds(text);
    if (opts.maxLength !== undefined) [ids] = this.truncateOnlyFirst(ids, undefined, opts.maxLength);
    return this.withEos(ids);
  }

  /** `ids(first) + [</s>] + ids(second) + [</s>]`, as HF's `tokenizer(first, second, truncation='only_first')`. */
  encodePair(first: string, second: string, opts: EncodeOptions = {}): number[] {
    let a = this.textToIds(first);
    let b = this.textToIds(second);
    if (opts.maxLength !== undefined) [a, b] = this.truncateOnlyFirst(a, b, opts.maxLength);
    return this.withEos(a).concat(this.withEos(b));
  }

  /** Labels for the decoder, as HF's `tokenizer(text_target=text, max_length, truncation=True).input_ids`. */
  encodeTarget(text: string, maxLength?: number): number[] {
    return this.encode(text, maxLength === undefined ? {} : { maxLength });
  }

  /** Ids of the text alone (no `</s>` appended), special tokens in the text recognised. */
  textToIds(text: string): number[] {
    // Not push(...ids): spreading a long document's ids overflows the call stack.
    return this.split(text).flatMap((seg) => ('id' in seg ? [seg.id] : this.sp.encodeIds(seg.text)));
  }

  /** Pieces of the text (HF `tokenize`): unknown characters keep their surface text, specials their token text. */
  tokenize(text: string): string[] {
    return this.split(text).flatMap((seg) => ('id' in seg ? [this.idToPiece(seg.id)] : this.sp.encodePieces(seg.text)));
  }

  /**
   * Text of the ids. With skipSpecialTokens (default) pad, eos, unk, sentinels and unused rows are dropped, as
   * HF drops its all_special_ids (SentencePiece alone would write `<unk>` as " ⁇ "), and the rest is
   * SentencePiece's decoding. Without it, specials are written as HF's slow tokenizer does. Either way HF's
   * clean-up of tokenization spaces follows, when the tokenizer (its folder's tokenizer_config.json) asks for it.
   */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const list = Array.from(ids);
    list.forEach((id, i) => this.checkId(id, `decode: position ${i}`));
    const textIds = (id: number): boolean =>
      id < this.pieceCount && id !== this.padTokenId && id !== this.eosTokenId && id !== this.unkTokenId;
    const text = (opts.skipSpecialTokens ?? true) ? this.sp.decodeIds(list.filter(textIds)) : this.decodeWithSpecials(list);
    return (opts.cleanUpTokenizationSpaces ?? this.cleanUpSpaces) ? cleanUpTokenizationSpaces(text) : text;
  }

  idToPiece(id: number): string {
    this.checkId(id, 'idToPiece');
    if (id < this.pieceCount) return this.pieces[id]!.piece;
    if (id < this.pieceCount + this.extraIds) return extraIdToken(this.pieceCount + this.extraIds - 1 - id);
    throw new RangeError(
      `T5Tokenizer.idToPiece: id ${id} is an unused embedding row (pieces and sentinels end at ` +
        `${this.pieceCount + this.extraIds - 1}); it has no token`,
    );
  }

  /** Id of a piece or `<extra_id_N>`; unknown pieces give unkTokenId, as sentencepiece and HF do. */
  pieceToId(piece: string): number {
    return this.idByPiece.get(piece) ?? this.specialIdByText.get(piece) ?? this.unkTokenId;
  }

  private checkId(id: number, where: string): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      const hint = id === -100 ? ' (-100 marks ignored label positions: replace it with the pad id first)' : '';
      throw new RangeError(
        `T5Tokenizer.${where}: id ${id} is not a token id (vocabulary is 0..${this.vocabSize - 1})${hint}`,
      );
    }
  }

  private withEos(ids: number[]): number[] {
    // HF's _add_eos_if_not_present: a text ending in a literal "</s>" gets no second one.
    return ids.length > 0 && ids[ids.length - 1] === this.eosTokenId ? ids : ids.concat(this.eosTokenId);
  }

  /**
   * HF's truncate_sequences with only_first, truncation_side right, computed before `</s>` is added and
   * counting one `</s>` per text. When the first text is too short to absorb the cut, HF only logs an error
   * and returns an over-long sequence; we instead drop the whole first text and cut the second from the
   * right, so the result always fits maxLength and keeps both `</s>`.
   */
  private truncateOnlyFirst(first: number[], second: undefined, maxLength: number): [number[], undefined];
  private truncateOnlyFirst(first: number[], second: number[], maxLength: number): [number[], number[]];
  private truncateOnlyFirst(
    first: number[],
    second: number[] | undefined,
    maxLength: number,
  ): [number[], number[] | undefined] {
    const specials = second === undefined ? 1 : 2;
    if (!Number.isInteger(maxLength) || maxLength < specials) {
      throw new RangeError(
        `T5Tokenizer: maxLength must be an integer >= ${specials} (room for </s>), got ${maxLength}`,
      );
    }
    const excess = first.length + (second?.length ?? 0) + specials - maxLength;
    if (excess <= 0) return [first, second];
    if (first.length > excess) return [first.slice(0, first.length - excess), second];
    return [[], second?.slice(0, maxLength - specials)];
  }

  /** HF's tokenize(): split on special tokens, sentinels eat the whitespace next to them. */
  private split(text: string): Segment[] {
    if (typeof text !== 'string') throw new TypeError(`T5Tokenizer: expected a string, got ${typeof text}`);
    const segs: Segment[] = [];
    let last = 0;
    for (const m of text.matchAll(this.specialPattern)) {
      segs.push({ text: text.slice(last, m.index) });
      const id = this.specialIdByText.get(m[0])!;
      segs.push({ id, stripsNeighbours: id >= this.pieceCount });
      last = m.index! + m[0].length;
    }
    segs.push({ text: text.slice(last) });
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      if (!('id' in seg) || !seg.stripsNeighbours) continue;
      const left = segs[i - 1];
      const right = segs[i + 1];
      if (left && 'text' in left) left.text = pyRstrip(left.text);
      if (right && 'text' in right) right.text = pyLstrip(right.text);
    }
    return segs.filter((s) => !('text' in s) || s.text.length > 0);
  }

  /**
   * HF's _decode with skip_special_tokens=False: sentinels are separate sub-texts joined by spaces;
   * within a run, `<pad>`/`</s>`/`<unk>` are glued on the way convert_tokens_to_string does it.
   */
  private decodeWithSpecials(ids: number[]): string {
    const subTexts: string[] = [];
    let run: number[] = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const s = this.runToString(run);
      if (s.length > 0) subTexts.push(s);
      run = [];
    };
    for (const id of ids) {
      if (id >= this.pieceCount + this.extraIds) continue; // unused rows have no text
      if (id >= this.pieceCount) {
        flush();
        subTexts.push(this.idToPiece(id));
      } else {
        run.push(id);
      }
    }
    flush();
    return subTexts.join(' ');
  }

  private runToString(ids: number[]): string {
    let out = '';
    let pending: number[] = [];
    let prevIsSpecial = false;
    for (const id of ids) {
      if (id === this.padTokenId || id === this.eosTokenId || id === this.unkTokenId) {
        if (!prevIsSpecial) out += ' ';
        out += this.sp.decodeIds(pending) + this.pieces[id]!.piece;
        pending = [];
        prevIsSpecial = true;
      } else {
        pending.push(id);
        prevIsSpecial = false;
      }
    }
    out += this.sp.decodeIds(pending);
    return pyStrip(out);
  }
}

export const extraIdToken = (n: number): string => `<extra_id_${n}>`;

/** The wrapper hard-codes T5's ids 0 = pad, 1 = eos, 2 = unk; another layout would encode silently wrong. */
function checkT5Layout(pieces: readonly SpPiece[], path: string): void {
  const expected: [number, number, string][] = [
    [0, PieceType.Control, 'pad (control)'],
    [1, PieceType.Control, 'eos (control)'],
    [2, PieceType.Unknown, 'unk (unknown)'],
  ];
  for (const [id, type, what] of expected) {
    const p = pieces[id];
    if (!p || p.type !== type) {
      throw new Error(
        `T5Tokenizer: ${path}: not a T5 SentencePiece model: id ${id} must be ${what}, ` +
          `found ${p ? `"${p.piece}" of type ${p.type}` : 'nothing'}`,
      );
    }
  }
}

/**
 * Cross-checks the wasm library's view of the model against our own parse: the piece count (an
 * out-of-range id makes decodeIds return "" for the whole sequence) and a sample of piece ids.
 */
function checkLibraryAgrees(sp: SpProcessor, pieces: readonly SpPiece[], path: string): void {
  const n = pieces.length;
  const probe = pieces.findIndex((p, i) => p.type === PieceType.Normal && sp.decodeIds([i]) !== '');
  const inRange = (id: number): boolean => probe >= 0 && sp.decodeIds([probe, id]) !== '';
  if (probe < 0 || !inRange(n - 1) || inRange(n)) {
    throw new Error(`T5Tokenizer: ${path}: sentencepiece does not see the ${n} pieces the file lists`);
  }
  const step = Math.max(1, Math.floor(n / 64));
  for (let i = 0; i < n; i += step) {
    if (pieces[i]!.type !== PieceType.Normal) continue;
    const view = new sp.sentencepiece.StringView(pieces[i]!.piece);
    const absl = view.getView();
    const id = sp.processor.PieceToId(absl);
    absl.delete();
    view.delete();
    if (id !== i) {
      throw new Error(
        `T5Tokenizer: ${path}: piece "${pieces[i]!.piece}" is id ${i} in the file but ${id} in sentencepiece`,
      );
    }
  }
}
