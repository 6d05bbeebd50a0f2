// Training speed as the progress bar shows it:
//   tokens/s  over a window of recent steps, restarted once it spans more than WINDOW_SECONDS, so the bar follows
//             the current speed rather than the run's average
//   s/step    this process's wall time since the loop started, less --profile's replay (not training), per step
//   ETA       the steps left at that pace, capped by what --time-limit leaves
const WINDOW_SECONDS = 30;

export class Throughput {
  private readonly start = performance.now();
  private windowTokens = 0;
  private windowSeconds = 0;
  private replaySeconds = 0;

  /** `startStep`: the optimizer step the loop starts from (a resumed run's); `timeLimit`: seconds, if any */
  constructor(readonly startStep: number, private readonly timeLimit: number | undefined) {}

  /** seconds since the loop started */
  elapsed(): number {
    return (performance.now() - this.start) / 1000;
  }

  timeUp(): boolean {
    return this.timeLimit !== undefined && this.elapsed() >= this.timeLimit;
  }

  addStep(tokens: number, seconds: number): void {
    this.windowTokens += tokens;
    this.windowSeconds += seconds;
  }

  addReplay(seconds: number): void {
    this.replaySeconds += seconds;
  }

  tokensPerSecond(): number {
    return this.windowTokens / Math.max(1e-9, this.windowSeconds);
  }

  /** `step`: optimizer steps done */
  secondsPerStep(step: number): number {
    return (this.elapsed() - this.replaySeconds) / Math.max(1, step - this.startStep);
  }

  eta(secondsPerStep: number, stepsLeft: number): number {
    return Math.min(secondsPerStep * stepsLeft, this.timeLimit !== undefined ? Math.max(0, this.timeLimit - this.elapsed()) : Infinity);
  }

  /** Starts a new tokens/s window once the current one is long enough. */
  rollWindow(): void {
    if (this.windowSeconds > WINDOW_SECONDS) {
      this.windowTokens = 0;
      this.windowSeconds = 0;
    }
  }
}
