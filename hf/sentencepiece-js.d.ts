// The package ships no types. Only what hf/tokenizer.ts uses is declared; the embind objects
// (`processor`, `sentencepiece`) are the C++ SentencePieceProcessor and Emscripten module underneath.
declare module '@agnai/sentencepiece-js' {
  interface EmbindObject {
    delete(): void;
  }
  interface SpStatus extends EmbindObject {
    ToString(): string;
  }
  interface SpStringView extends EmbindObject {
    getView(): EmbindObject;
  }
  interface SpCppProcessor {
    status(): SpStatus;
    PieceToId(view: EmbindObject): number;
  }
  interface SpModule {
    StringView: new (text: string) => SpStringView;
  }

  export class SentencePieceProcessor {
    /** Reads the file with fs.readFileSync; never rejects on a bad model (check `processor.status()`). */
    load(path: string): Promise<void>;
    encodeIds(text: string): number[];
    encodePieces(text: string): string[];
    /** Returns "" for the whole sequence when any id is out of range. */
    decodeIds(ids: number[]): string;
    processor: SpCppProcessor;
    sentencepiece: SpModule;
  }

  const sentencepiece: { SentencePieceProcessor: typeof SentencePieceProcessor };
  export default sentencepiece;
}
