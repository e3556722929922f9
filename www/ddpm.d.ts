// Types of www/ddpm.js, the promise-based JS API of the engine.

export interface Backend {
  /** "WebGPU: <adapter>" or "CPU (wasm)". */
  name: string;
  isGpu: boolean;
  /** WebGPU on a fallback (software) adapter such as SwiftShader: slower than the CPU backend. */
  software: boolean;
  /** Why WebGPU is not in use, when it is not. */
  note: string | null;
}

export interface ModelInfo {
  /** [height, width], also for a config.json that gives one number. */
  sample_size: [number, number];
  in_channels: number;
  params: number;
  num_train_timesteps: number;
}

export interface Model {
  /** The absolute URL prefix the model was loaded from: its key in the engine. */
  url: string;
  info: ModelInfo;
  layout: 'flat' | 'pipeline';
  cached: boolean;
}

export interface Download {
  file: string;
  loaded: number;
  total: number | null;
  cached: boolean;
  /** Download speed so far, and seconds left (null while the size is unknown). */
  bytesPerSec?: number;
  etaSec?: number | null;
  /** 2 when a cut download started again from the start. */
  attempt?: number;
  /** The .bin is downloaded and being converted to safetensors (once; kept so afterwards). */
  converting?: boolean;
}

export interface LoadOptions {
  /** The weights file's SHA-256 (64 hex digits); refused if it differs. */
  sha256?: string;
  /** The Hub's base URL for `hf:` ids (default https://huggingface.co). */
  hub?: string;
  /** Files larger than this many bytes are not downloaded: the promise rejects with an Error
   *  whose `tooLarge` is {file, bytes}, so the page can ask first and load again without it. */
  maxBytes?: number;
  onDownload?: (d: Download) => void;
}

export interface Progress {
  done: number;
  total: number;
  stepsPerSec: number;
  etaSec: number | null;
}

/** An RGBA picture: the n images side by side in a grid. */
export interface Frame {
  width: number;
  height: number;
  rgba: Uint8Array;
}

export interface Preview {
  done: number;
  total: number;
  /** The current x_t and the predicted x_0, every image in one grid, with a 1-pixel white
   *  border around and between the images (also around a single image). */
  xt: Frame | null;
  x0: Frame | null;
}

export interface Images {
  /** One RGBA image per sample, width x height. */
  images: Uint8Array[];
  width: number;
  height: number;
  ms: number;
  /** How many workers made them (more than 1 where a CPU run was split across cores). */
  workers: number;
}

export interface GenerateOptions {
  n?: number;
  sampler?: 'ddim' | 'dpm++' | 'dpm++-karras' | 'ddpm';
  /** Default: T for DDPM, min(50, T) for DDIM. */
  steps?: number;
  /** DDIM only: 0 is deterministic, 1 adds DDPM-like noise. */
  eta?: number;
  seed?: number;
  /** Call onPreview every this many steps, and at the last step (0: at the last step only). */
  previewEvery?: number;
  /** On the CPU backend, the most workers the images are split across (default: one per
   *  core; 1 keeps them on the engine's own worker). The images are the same either way. */
  workers?: number;
  /** Where the run starts instead of x_T ~ N(0, I). */
  from?: ImageStart | InterpolationStart;
  onProgress?: (p: Progress) => void;
  onPreview?: (p: Preview) => void;
}

/** SDEdit: the image noised to `strength` (0..1) of the way through the run's timesteps and
 *  denoised from there; strength 0 gives it back, each of the n images has its own noise. */
export interface ImageStart {
  /** One RGBA image (as a canvas gives it) of the model's size. */
  image: Uint8Array | Uint8ClampedArray;
  strength: number;
}

/** Image i (of n = count) starts from the noise i / (count - 1) of the way along the great
 *  circle from `seed`'s image 0 to `toSeed`'s image 0 (spherical interpolation). */
export interface InterpolationStart {
  toSeed: number;
  count: number;
}

export interface Run {
  id: string;
  /** The images, or null when cancelled; rejects with the engine's message on an error. */
  result: Promise<Images | null>;
  /** Stops after the step in flight. */
  cancel(): void;
}

export interface Client {
  readonly backend: Backend;
  /** `url`: a diffusers folder's URL, or `hf:OWNER/NAME[@REVISION][/SUBFOLDER]` on the Hub. */
  load(url: string, options?: LoadOptions): Promise<Model>;
  generate(model: Model | string, options?: GenerateOptions): Run;
  /** x0 noised to the paper's step t (0..T) with the noise of `seed`, and the model's
   *  prediction there (what <ddpm-forward> draws). */
  forward(model: Model | string, options: ForwardOptions): Promise<ForwardView>;
  /** Drops the kept model files; resolves to whether there were any to drop. */
  clearCache(): Promise<boolean>;
}

export interface ForwardOptions {
  /** x_0: `n` RGBA images of the model's size (as a canvas gives them). */
  image: Uint8Array | Uint8ClampedArray;
  n?: number;
  t: number;
  seed?: number;
}

export interface ForwardView {
  t: number;
  sqrtAlphaBar: number;
  sqrtOneMinusAlphaBar: number;
  /** alpha_bar / (1 - alpha_bar); Infinity at t = 0. */
  snr: number;
  /** RGBA grids of the n images. */
  frames: { x0: Frame; x_t: Frame; eps: Frame; eps_hat: Frame; x0_hat: Frame };
  /** The same in [-1, 1]. */
  values: { x0: Float32Array; x_t: Float32Array; eps: Float32Array; eps_hat: Float32Array; x0_hat: Float32Array };
}

export function connect(options?: { backend?: 'auto' | 'cpu' }): Promise<Client>;

/** A noise schedule's curves over t = 0..T-1 (beta_tilde: the `fixed_small` posterior variance). */
export interface ScheduleCurves {
  T: number;
  beta: Float32Array;
  alpha_bar: Float32Array;
  log_snr: Float32Array;
  beta_tilde: Float32Array;
}

/** The curves of a scheduler_config.json's text (`name` names it in errors), computed by the
 *  engine's wasm; needs no connect(). */
export function scheduleCurves(name: string, config: string): Promise<ScheduleCurves>;
