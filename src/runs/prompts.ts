/**
 * Parsing of `07_video_prompts/Episode-NN-Video-Prompts.txt`. Pure: text in, prompts and errors out.
 *
 * Grammar (README-ready copy in the module report):
 * - The file is UTF-8, with or without a BOM, with LF or CRLF line ends.
 * - A prompt starts at a shot marker line:
 *     `Shot 001: text`, `Shot-001: text`, `Shot001: text`, `shot 1: text`, `镜头001：text`, `镜头 1: text`
 *   i.e. `Shot` (any letter case) or `镜头`, optional spaces or one hyphen, the shot number, then a colon
 *   (`:` or full-width `：`) and the first line of the prompt (which may be empty).
 *   A marker may also stand alone on its line, optionally as a Markdown heading (`## Shot 001`, any level,
 *   optional trailing colon); the prompt is then the text on the following lines.
 * - A prompt continues over the following lines until the next marker. Lines are trimmed and joined with
 *   a newline; blank lines are dropped.
 * - Lines starting with `#` that are not shot markers are comments and ignored, also inside a prompt.
 *   `//` is not special.
 * - Shot numbers are matched by value: `1`, `01`, `001` (and full-width `００１`) are the same shot.
 * - Errors (reported, never silent): a shot marked twice (`prompt-duplicate`, naming every line; the shot
 *   gets no prompt), a marker with no text (`prompt-empty`), and text before the first marker that is not
 *   a comment (`prompt-stray-text`).
 */
import { InputError } from '../errors';

export interface ParsedPrompt {
  text: string;
  /** 1-based line of the shot marker. */
  line: number;
}

/** An InputError located in a prompt file, and at a shot when one is concerned. */
export class PromptError extends InputError {
  constructor(
    message: string,
    category: 'prompt-duplicate' | 'prompt-empty' | 'prompt-stray-text',
    fix: string,
    readonly line: number,
    readonly shot?: number,
  ) {
    super(message, category, fix);
  }
}

export interface PromptFile {
  /** Shot number → prompt, in shot order. Shots with an error are absent. */
  prompts: Map<number, ParsedPrompt>;
  errors: PromptError[];
}

// `Shot 001: text`, `## Shot 001`, `镜头 1：text`; group 1 is the number, group 2 the text after the colon.
const MARKER_LINE = /^(?:#{1,6}\s*)?(?:shot|镜头)\s*-?\s*([0-9０-９]+)\s*(?:[:：](.*))?$/i;

interface Block {
  shot: number;
  line: number;
  lines: string[];
}

export function parsePromptFile(text: string, fileLabel: string): PromptFile {
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  const blocks: Block[] = [];
  const strayLines: number[] = [];
  let current: Block | undefined;

  lines.forEach((raw, index) => {
    const line = raw.trim();
    const lineNo = index + 1;
    const marker = MARKER_LINE.exec(line);
    if (marker) {
      current = { shot: shotNumber(marker[1]!), line: lineNo, lines: [] };
      blocks.push(current);
      const inline = marker[2]?.trim();
      if (inline) current.lines.push(inline);
      return;
    }
    if (line === '' || line.startsWith('#')) return;
    if (current) current.lines.push(line);
    else strayLines.push(lineNo);
  });

  const errors: PromptError[] = [];
  if (strayLines.length > 0) {
    const first = strayLines[0]!;
    const more = strayLines.length > 1 ? ` (and ${strayLines.length - 1} more lines)` : '';
    errors.push(
      new PromptError(
        `${fileLabel} line ${first}: text before the first shot marker belongs to no shot: "${excerpt(lines[first - 1]!)}"${more}.`,
        'prompt-stray-text',
        'Start each prompt with a marker such as "Shot 001:", or make the line a comment by starting it with #.',
        first,
      ),
    );
  }

  const byShot = new Map<number, Block[]>();
  for (const block of blocks) {
    const same = byShot.get(block.shot);
    if (same) same.push(block);
    else byShot.set(block.shot, [block]);
  }

  const prompts = new Map<number, ParsedPrompt>();
  for (const [shot, same] of [...byShot].sort((a, b) => a[0] - b[0])) {
    const first = same[0]!;
    if (same.length > 1) {
      const at = same.map((b) => b.line);
      errors.push(
        new PromptError(
          `${fileLabel}: shot ${shot} has a prompt at lines ${at.slice(0, -1).join(', ')} and ${at[at.length - 1]}; it is skipped until only one remains.`,
          'prompt-duplicate',
          `Keep one "Shot ${pad3(shot)}:" marker and renumber or delete the others.`,
          same[1]!.line,
          shot,
        ),
      );
      continue;
    }
    const joined = first.lines.join('\n').trim();
    if (joined === '') {
      errors.push(
        new PromptError(
          `${fileLabel} line ${first.line}: shot ${shot} has an empty prompt.`,
          'prompt-empty',
          `Write the motion description after "Shot ${pad3(shot)}:" or on the lines below it.`,
          first.line,
          shot,
        ),
      );
      continue;
    }
    prompts.set(shot, { text: joined, line: first.line });
  }

  errors.sort((a, b) => a.line - b.line);
  return { prompts, errors };
}

function shotNumber(digits: string): number {
  // Full-width digits (U+FF10..U+FF19) are typed by Chinese input methods.
  const ascii = digits.replace(/[０-９]/g, (d) => String(d.charCodeAt(0) - 0xff10));
  return Number(ascii);
}

function pad3(n: number): string {
  return String(n).padStart(3, '0');
}

function excerpt(line: string): string {
  const t = line.trim();
  return t.length > 60 ? `${t.slice(0, 57)}...` : t;
}
