//! `ddpm classifier` trains the small MNIST classifier that `ddpm eval` uses; `ddpm eval` reports a
//! model's classifier-feature FID beside the real-vs-real FID at the same n, the classifier's
//! mean confidence, the class histogram, and how close the samples come to training digits.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ddpm_web::eval::classifier::{CLASSES, Classifier, FEATURES};
use ddpm_web::eval::dataset::{Dataset, mnist};
use ddpm_web::eval::fid::frechet_distance;
use ddpm_web::eval::nearest::nearest_distances;
use ddpm_web::images::{to_pixels, unit};
use ddpm_web::native::files::load_model;
use ddpm_web::sampler::{SampleRequest, sample};
use ddpm_web::weights::{self, SaveDtype, to_host, to_safetensors, to_vec};
use ddpm_web::{Error, Result};

use crate::samples::{Run, SampleStore};

const WEIGHTS: &str = "classifier.safetensors";
const CARD: &str = "classifier.json";
/// Images per classifier forward pass.
const CHUNK: usize = 500;

fn bar(len: usize, what: &str) -> ProgressBar {
    ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}}  {{per_sec}}  ETA {{eta}}  {{msg}}"
        ))
        .expect("valid template"),
    )
}

fn labels(data: &Dataset, idx: &[usize]) -> Vec<i64> {
    idx.iter().map(|i| data.labels[*i].map_or(0, i64::from)).collect()
}

pub struct ClassifierArgs {
    pub mnist_dir: PathBuf,
    pub out: PathBuf,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

/// Trains on the 9,000 training digits (the split of `ddpm train`), reports accuracy on the 1,000
/// held out, writes `classifier.safetensors` and `classifier.json` to `out`.
pub fn train_classifier(args: ClassifierArgs, device: Device) -> Result<()> {
    let (train, held_out) = mnist(&args.mnist_dir, 100, 0)?;
    let train_device = device.clone().autodiff();
    train_device.seed(args.seed);
    let mut model = Classifier::new(&train_device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let progress = bar(args.steps, "training the classifier");
    for step in 0..args.steps {
        let idx: Vec<usize> = (0..args.batch).map(|_| rng.random_range(0..train.len())).collect();
        let x = train.batch(&idx, &train_device);
        let y =
            Tensor::<1, Int>::from_data(TensorData::new(labels(&train, &idx), [idx.len()]), &train_device);
        let loss = loss_fn.forward(model.logits(model.features(x)), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(args.lr, model, grads);
        if step % 20 == 0 || step + 1 == args.steps {
            progress.set_message(format!("loss {:.4}", to_vec(loss)?[0]));
        }
        progress.inc(1);
    }
    progress.finish();
    let model = model.valid();
    let (_, predicted, _) = classify(&model, &held_out, &device)?;
    let correct =
        predicted.iter().enumerate().filter(|(i, p)| held_out.labels[*i] == Some(**p as u8)).count();
    let accuracy = correct as f64 / held_out.len() as f64;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(args.out.display(), e))?;
    let path = args.out.join(WEIGHTS);
    std::fs::write(&path, to_safetensors(&to_host(&model)?, SaveDtype::F32)?)
        .map_err(|e| Error::io(path.display(), e))?;
    let card = serde_json::json!({
        "held_out_accuracy": accuracy, "held_out": held_out.len(), "train_digits": train.len(),
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "command": format!("ddpm classifier --out {} --steps {} --batch {} --lr {} --seed {}", args.out.display(), args.steps, args.batch, args.lr, args.seed),
    });
    let path = args.out.join(CARD);
    std::fs::write(&path, serde_json::to_string_pretty(&card).expect("json") + "\n")
        .map_err(|e| Error::io(path.display(), e))?;
    println!(
        "held-out accuracy {:.2}% ({correct}/{}); wrote {}",
        100.0 * accuracy,
        held_out.len(),
        args.out.display()
    );
    Ok(())
}

fn load_classifier(dir: &Path, device: &Device) -> Result<Classifier> {
    let path = dir.join(WEIGHTS);
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::io(path.display(), format!("{e} (train one with `ddpm classifier --out {}`)", dir.display()))
    })?;
    weights::load(Classifier::new(device), &path.display().to_string(), &bytes)
}

/// Features, predicted classes and confidences (max softmax probability) of every image.
fn classify(model: &Classifier, data: &Dataset, device: &Device) -> Result<(Vec<f32>, Vec<usize>, Vec<f32>)> {
    let (mut features, mut classes, mut confidence) = (vec![], vec![], vec![]);
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(CHUNK) {
        let f = model.features(data.batch(idx, device));
        let p = to_vec(softmax(model.logits(f.clone()), 1))?;
        features.extend(to_vec(f)?);
        for row in p.chunks_exact(CLASSES) {
            let (best, prob) = row
                .iter()
                .enumerate()
                .fold((0, 0.0f32), |acc, (i, v)| if *v > acc.1 { (i, *v) } else { acc });
            classes.push(best);
            confidence.push(prob);
        }
    }
    Ok((features, classes, confidence))
}

pub struct EvalArgs {
    pub model: PathBuf,
    pub n: usize,
    pub request: SampleRequest,
    pub batch: usize,
    pub classifier: PathBuf,
    pub mnist_dir: PathBuf,
    pub samples: Option<PathBuf>,
}

const MNIST_DIGITS: usize = 10_000;

pub fn eval(args: EvalArgs, device: Device) -> Result<()> {
    if args.n < 2 || 2 * args.n > MNIST_DIGITS {
        return Err(Error::Request(format!(
            "--n must be 2 to {} (two disjoint sets of n real digits are compared), got {}",
            MNIST_DIGITS / 2,
            args.n
        )));
    }
    if args.batch == 0 || args.batch > ddpm_web::sampler::MAX_BATCH {
        return Err(Error::Request(format!(
            "--batch must be 1 to {}, got {}",
            ddpm_web::sampler::MAX_BATCH,
            args.batch
        )));
    }
    let model = load_model(&args.model, &device)?;
    if model.unet.sample_shape() != [1, 32, 32] {
        return Err(Error::Request(format!(
            "ddpm eval compares with MNIST: the model must make 1x32x32 images, it makes {:?}",
            model.unet.sample_shape()
        )));
    }
    let classifier = load_classifier(&args.classifier, &device)?;

    // Two disjoint sets of n real digits, drawn with the seed.
    let (train, held_out) = mnist(&args.mnist_dir, 100, 0)?;
    let all = Dataset {
        shape: train.shape,
        images: [&train.images[..], &held_out.images[..]].concat(),
        labels: [&train.labels[..], &held_out.labels[..]].concat(),
    };
    if all.len() < 2 * args.n {
        return Err(Error::Request(format!(
            "--n {}: {} holds {} digits, fewer than the 2 x n real digits compared",
            args.n,
            args.mnist_dir.display(),
            all.len()
        )));
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(args.request.seed));
    let (real_a, real_b) = (all.subset(&order[..args.n]), all.subset(&order[args.n..2 * args.n]));
    let (feat_a, _, conf_real) = classify(&classifier, &real_a, &device)?;
    let (feat_b, _, _) = classify(&classifier, &real_b, &device)?;

    // n generated digits as 8-bit images, in batches; batch k uses seed + k. With --samples, a
    // batch kept there by an earlier run of the same model and sampling is read, not sampled.
    let sampler = format!("{}-{}", args.request.sampler.name(), args.request.steps);
    let store = match &args.samples {
        Some(dir) => Some(SampleStore::open(
            dir,
            &Run::new(&args.model, sampler.clone(), args.request.eta, args.request.seed, args.batch)?,
        )?),
        None => None,
    };
    let progress = bar(args.n, "sampling");
    let mut generated =
        Dataset { shape: [1, 32, 32], images: Vec::with_capacity(args.n * 1024), labels: vec![] };
    for (k, start) in (0..args.n).step_by(args.batch).enumerate() {
        let n = args.batch.min(args.n - start);
        let images = match store.as_ref().map(|s| s.get(k, n)).transpose()?.flatten() {
            Some(images) => images,
            None => {
                let request =
                    SampleRequest { n, seed: args.request.seed.wrapping_add(k as u64), ..args.request };
                let x0 = to_vec(sample(&model.unet, &model.scheduler, request, 0, |_| {}, || false)?)?;
                let images: Vec<f32> = (0..n)
                    .flat_map(|i| to_pixels(&x0, [n, 1, 32, 32], i).data)
                    .map(|p| unit(p as f32))
                    .collect();
                if let Some(store) = &store {
                    store.put(k, &images, n)?;
                }
                images
            }
        };
        generated.images.extend(images);
        generated.labels.extend(std::iter::repeat_n(None, n));
        progress.inc(n as u64);
    }
    progress.finish();
    let (feat_g, classes, conf) = classify(&classifier, &generated, &device)?;

    // Copies: each sample's distance to its nearest training digit, beside the same for the 1,000
    // held-out digits (real digits the model never saw); "near copies" are samples closer than
    // the closest 1% of held-out digits.
    let mut nn_held = nearest_distances(&held_out, &train, &device)?;
    let mut nn_gen = nearest_distances(&generated, &train, &device)?;
    nn_held.sort_unstable_by(f32::total_cmp);
    nn_gen.sort_unstable_by(f32::total_cmp);
    let median = |v: &[f32]| v[v.len() / 2];
    let p1_held = nn_held[(nn_held.len() - 1) / 100];
    let near_copies = nn_gen.iter().filter(|d| **d < p1_held).count() as f64 / nn_gen.len() as f64;

    let fid = frechet_distance(&feat_g, &feat_a, FEATURES);
    let fid_real = frechet_distance(&feat_b, &feat_a, FEATURES);
    let mean = |v: &[f32]| v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
    let mut histogram = [0usize; CLASSES];
    for c in &classes {
        histogram[*c] += 1;
    }
    println!(
        "model {} · {} samples · {sampler} (eta {}) · seed {}",
        args.model.display(),
        args.n,
        args.request.eta,
        args.request.seed
    );
    println!("FID (classifier features) {fid:.2}   real vs real at n = {}: {fid_real:.2}", args.n);
    println!("mean classifier confidence {:.3}   (real digits: {:.3})", mean(&conf), mean(&conf_real));
    println!(
        "classes {}",
        histogram.iter().enumerate().map(|(c, k)| format!("{c}:{k}")).collect::<Vec<_>>().join(" ")
    );
    println!(
        "nearest training digit (pixel L2 in [-1, 1]): median {:.2} for the samples, {:.2} for the {} held-out digits; near copies (closer than the closest 1% of held-out digits, {p1_held:.2}): {:.1}%",
        median(&nn_gen),
        median(&nn_held),
        held_out.len(),
        100.0 * near_copies
    );
    println!(
        "{}",
        serde_json::json!({"model": args.model.display().to_string(), "n": args.n, "sampler": sampler, "eta": args.request.eta,
            "seed": args.request.seed, "fid": fid, "fid_real_vs_real": fid_real, "confidence": mean(&conf),
            "confidence_real": mean(&conf_real), "classes": histogram, "nearest_train_median": median(&nn_gen),
            "nearest_train_median_held_out": median(&nn_held), "near_copies": near_copies})
    );
    Ok(())
}
