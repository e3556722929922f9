//! The sampling loop and the timestep grids.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ddpm_web::Error;
use ddpm_web::config::{SchedulerConfig, UNetConfig};
use ddpm_web::native::files::load_model;
use ddpm_web::noise;
use ddpm_web::sampler::{
    Denoiser, DpmSolver, MAX_BATCH, MAX_PIXELS, SampleRequest, SamplerKind, Scheduler, Solver, Start, sample,
};
use ddpm_web::unet::UNet2DModel;

fn run(request: SampleRequest) -> Vec<f32> {
    let m = load_model(&tiny_dir(), &Device::flex()).unwrap();
    to_vec(sample(&m.unet, &m.scheduler, request, 0, |_| {}, || false).unwrap())
}

fn ddim(n: usize, seed: u64) -> SampleRequest {
    SampleRequest { n, sampler: SamplerKind::Ddim, steps: 10, eta: 0.0, seed, first: 0 }
}

#[test]
fn a_seed_reproduces_its_images_whatever_the_batch_size() {
    let a = run(ddim(3, 11));
    assert_eq!(a, run(ddim(3, 11)));
    assert_ne!(a, run(ddim(3, 12)));
    let one = run(ddim(1, 11));
    assert_eq!(one[..], a[..one.len()], "image 0 of seed 11 is the same alone or in a batch");
    assert!(a.iter().all(|x| x.is_finite()));
}

#[test]
fn a_batch_split_into_parts_gives_the_same_images() {
    for sampler in [SamplerKind::Ddpm, SamplerKind::Ddim] {
        let whole = SampleRequest { n: 3, sampler, steps: 10, eta: 1.0, seed: 5, first: 0 };
        let mut parts = run(SampleRequest { n: 2, ..whole });
        parts.extend(run(SampleRequest { n: 1, first: 2, ..whole }));
        assert_eq!(parts, run(whole), "{sampler:?}: images 0-1 and 2 of seed 5 run apart");
    }
}

#[test]
fn ddpm_and_stochastic_ddim_run_and_stay_finite() {
    for request in [
        SampleRequest { n: 2, sampler: SamplerKind::Ddpm, steps: 20, eta: 0.0, seed: 1, first: 0 },
        SampleRequest { n: 2, sampler: SamplerKind::Ddim, steps: 10, eta: 1.0, seed: 1, first: 0 },
    ] {
        let x = run(request);
        assert_eq!(x.len(), 2 * 16 * 16);
        assert!(x.iter().all(|v| v.is_finite()), "{request:?}");
        assert_ne!(x, run(SampleRequest { seed: 2, ..request }), "noise is drawn: {request:?}");
    }
}

#[test]
fn progress_previews_and_cancel() {
    let m = load_model(&tiny_dir(), &Device::flex()).unwrap();
    let mut seen = vec![];
    let mut previews = 0;
    let r = sample(
        &m.unet,
        &m.scheduler,
        ddim(1, 0),
        4,
        |p| {
            seen.push(p.done);
            previews += usize::from(p.x_t.is_some() && p.pred_x0.is_some());
        },
        || false,
    );
    assert!(r.is_ok());
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(previews, 3, "previews at steps 4, 8 and the last");
    let mut steps = 0;
    let r = sample(&m.unet, &m.scheduler, ddim(1, 0), 0, |_| steps += 1, || true);
    assert!(matches!(r, Err(Error::Cancelled)));
    assert_eq!(steps, 1, "cancel stops after the step in flight");
}

#[test]
fn absurd_requests_are_refused_naming_the_limit() {
    let m = load_model(&tiny_dir(), &Device::flex()).unwrap();
    let go = |r: SampleRequest| match sample(&m.unet, &m.scheduler, r, 0, |_| {}, || false) {
        Ok(_) => panic!("{r:?} should be refused"),
        Err(e) => e.to_string(),
    };
    let e = go(SampleRequest { n: MAX_BATCH + 1, ..ddim(1, 0) });
    assert!(e.contains(&MAX_BATCH.to_string()), "{e}");
    let e = go(SampleRequest { steps: 1001, ..ddim(1, 0) });
    assert!(e.contains("1000") && e.contains("1001"), "{e}");
    let e = go(SampleRequest { steps: 0, ..ddim(1, 0) });
    assert!(e.contains("steps"), "{e}");
    let e = go(SampleRequest { eta: 2.0, ..ddim(1, 0) });
    assert!(e.contains("eta"), "{e}");

    // Large images: the pixels of a request are limited before x_T is drawn.
    let cfg = UNetConfig::from_json(
        "big.json",
        r#"{"sample_size": 2048, "block_out_channels": [8], "down_block_types": ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"], "norm_num_groups": 8, "layers_per_block": 1}"#,
    )
    .unwrap();
    let big = UNet2DModel::new(&cfg, &Device::flex());
    let r = sample(&big, &m.scheduler, SampleRequest { n: 2, ..ddim(1, 0) }, 0, |_| {}, || false);
    let e = r.expect_err("2 images of 2048x2048 are refused").to_string();
    assert!(e.contains(&MAX_PIXELS.to_string()) && e.contains("2048x2048"), "{e}");
}

fn grid(spacing: &str, offset: usize, n: usize) -> Vec<usize> {
    let cfg = SchedulerConfig::from_json(
        "s",
        &format!(r#"{{"timestep_spacing":"{spacing}","steps_offset":{offset}}}"#),
    )
    .unwrap();
    Scheduler::new(cfg).timesteps(n).unwrap()
}

#[test]
fn timestep_grids_follow_diffusers() {
    assert_eq!(grid("leading", 0, 4), [750, 500, 250, 0]);
    assert_eq!(grid("leading", 1, 4), [751, 501, 251, 1]);
    assert_eq!(grid("trailing", 0, 4), [999, 749, 499, 249]);
    assert_eq!(grid("linspace", 0, 10), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    assert_eq!(grid("leading", 0, 1000), (0..1000).rev().collect::<Vec<_>>());
    assert_eq!(grid("trailing", 0, 3), [999, 666, 332]);
}

/// The scheduler config of a case of `tests/data/dpm/make.py`, from its name
/// (`{linear|cosine|scaled}_{eps|sample|v|karras}_{steps}`), and whether it uses Karras sigmas.
fn dpm_case(name: &str) -> (Scheduler, bool, usize) {
    let parts: Vec<&str> = name.split('_').collect();
    let schedule = match parts[0] {
        "linear" => "",
        "cosine" => r#""beta_schedule": "squaredcos_cap_v2","#,
        "scaled" => r#""beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,"#,
        other => panic!("case {name}: schedule {other}"),
    };
    let prediction = match parts[1] {
        "sample" => "sample",
        "v" => "v_prediction",
        _ => "epsilon",
    };
    let json = format!(r#"{{{schedule} "prediction_type": "{prediction}"}}"#);
    let config = SchedulerConfig::from_json("case", &json).unwrap();
    (Scheduler::new(config), parts[1] == "karras", parts[2].parse().unwrap())
}

#[test]
fn dpm_solver_matches_diffusers_step_by_step() {
    let dev = Device::flex();
    let vectors = data_vectors("dpm/dpm.safetensors");
    let cases: std::collections::BTreeSet<&str> =
        vectors.keys().map(|k| k.split('.').next().unwrap()).collect();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for case in cases {
        let (scheduler, karras, steps) = dpm_case(case);
        let mut solver = DpmSolver::new(&scheduler, steps, karras);
        let want_t: Vec<usize> =
            vectors[&format!("{case}.timesteps")].data.iter().map(|t| *t as usize).collect();
        assert_eq!(solver.timesteps(), &want_t[..], "{case}: timesteps");
        let err = max_rel_diff(solver.sigmas(), &vectors[&format!("{case}.sigmas")].data, 1e-6);
        assert!(err <= 1e-6, "{case}: sigmas, max relative error {err}");
        let (outputs, samples) =
            (&vectors[&format!("{case}.model_outputs")], &vectors[&format!("{case}.samples")]);
        let mut x = tensor4(&vectors[&format!("{case}.x_T")], &dev);
        let mut no_noise = || -> burn::tensor::Tensor<4> { panic!("DPM-Solver++ draws no noise") };
        for i in 0..steps {
            x = solver.step(&scheduler, i, row4(outputs, i, &dev), x, &mut no_noise).prev_sample;
            let (ours, want) = (to_vec(x.clone()), to_vec(row4(samples, i, &dev)));
            // Within 1e-5 of the sample's scale: random model outputs at the cosine schedule's
            // first sigma (2e4) drive its samples to 1e4, where f32 itself is 1e-3 apart.
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(&ours, &want) / scale;
            assert!(err <= 1e-5, "{case}: step {i} of {steps}, max error {err} of the scale {scale}");
        }
    }
}

#[test]
fn every_sampler_runs_by_name_and_dpm_solver_takes_few_steps() {
    for kind in SamplerKind::ALL {
        assert_eq!(kind.name().parse::<SamplerKind>().unwrap(), kind);
        let request = SampleRequest { n: 2, sampler: kind, steps: 5, eta: 0.0, seed: 3, first: 0 };
        let images = run(request);
        assert!(images.iter().all(|x| x.is_finite()), "{}", kind.name());
    }
    let e = "dpm".parse::<SamplerKind>().unwrap_err().to_string();
    assert!(e.contains("ddpm, ddim, dpm++, dpm++-karras"), "{e}");
}

/// The images of a run from `start` on the tiny model, and the steps it took.
fn run_from(request: SampleRequest, start: Start) -> Result<(Vec<f32>, usize), Error> {
    let m = load_model(&tiny_dir(), &Device::flex()).unwrap();
    let mut chain = Denoiser::start(&m.unet, &m.scheduler, request, start)?;
    let total = chain.total_steps();
    while chain.step(&m.unet, &m.scheduler).is_some() {}
    assert_eq!(chain.steps_done(), total);
    Ok((to_vec(chain.sample()), total))
}

/// A [1, 1, 16, 16] image for the tiny model: a bright square on a dark ground.
fn drawing() -> Tensor<4> {
    let v: Vec<f32> = (0..16 * 16)
        .map(|i| if (4..12).contains(&(i % 16)) && (4..12).contains(&(i / 16)) { 0.9 } else { -0.9 })
        .collect();
    Tensor::from_data(TensorData::new(v, [1, 1, 16, 16]), &Device::flex())
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / a.len() as f32).sqrt()
}

#[test]
fn sdedit_runs_the_strength_of_the_steps_from_the_noised_drawing() {
    let x0 = to_vec(drawing());
    let request = SampleRequest { n: 2, ..ddim(2, 4) };
    let image = |strength| Start::Image { x0: drawing(), strength };
    let (same, steps) = run_from(request, image(0.0)).unwrap();
    assert_eq!(steps, 0, "strength 0 runs no step");
    assert_eq!(same, [x0.clone(), x0.clone()].concat(), "strength 0 gives the drawing back");
    // diffusers' img2img: int(steps * strength) of the run's last timesteps
    assert_eq!(run_from(request, image(0.35)).unwrap().1, 3);
    assert_eq!(run_from(request, image(1.0)).unwrap().1, 10);
    let (light, _) = run_from(request, image(0.2)).unwrap();
    let (plain, _) = run_from(request, Start::Noise).unwrap();
    let per_image = |v: &[f32]| v.chunks(x0.len()).map(|x| distance(x, &x0)).collect::<Vec<_>>();
    for (l, p) in per_image(&light).iter().zip(per_image(&plain)) {
        assert!(*l < p, "a light edit stays nearer the drawing ({l}) than a sample from noise ({p})");
    }
    assert_ne!(light[..x0.len()], light[x0.len()..], "each image has its own noise");
    let (half, _) = run_from(SampleRequest { n: 1, first: 1, ..request }, image(0.5)).unwrap();
    assert_eq!(
        half[..],
        run_from(request, image(0.5)).unwrap().0[x0.len()..],
        "image 1 alone or in the batch"
    );
}

#[test]
fn interpolation_runs_from_one_seed_to_the_other() {
    let count = 5;
    let request = ddim(count, 3);
    let (strip, _) = run_from(request, Start::Between { to_seed: 8, count }).unwrap();
    let size = strip.len() / count;
    let first = run(ddim(1, 3));
    let last = run(ddim(1, 8));
    assert!(distance(&strip[..size], &first) < 1e-5, "image 0 is seed 3's image 0");
    assert!(distance(&strip[(count - 1) * size..], &last) < 1e-5, "the last image is seed 8's image 0");
    let middle = &strip[2 * size..3 * size];
    assert!(distance(middle, &first) > 1e-2 && distance(middle, &last) > 1e-2, "the middle is neither");
    let part = run_from(SampleRequest { n: 2, first: 2, ..request }, Start::Between { to_seed: 8, count })
        .unwrap()
        .0;
    assert_eq!(part[..], strip[2 * size..4 * size], "images 2-3 run apart");
}

#[test]
fn slerp_keeps_the_norm_of_noise() {
    let shape = [1, 28, 28];
    let x = to_vec(noise::slerp(1, 2, 9, 0, 9, shape, &Device::flex()));
    let d = (28 * 28) as f32;
    for (i, img) in x.chunks(28 * 28).enumerate() {
        let norm = img.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm / d.sqrt() - 1.0).abs() < 0.1,
            "image {i}: |x_T| = {norm}, noise has about {}",
            d.sqrt()
        );
    }
}

#[test]
fn bad_starts_are_refused_with_the_reason() {
    let request = ddim(2, 0);
    let err = |start| run_from(request, start).unwrap_err().to_string();
    assert!(
        err(Start::Image { x0: drawing(), strength: 1.5 })
            .contains("strength must be between 0 and 1, got 1.5")
    );
    let small = drawing().narrow(2, 0, 8);
    assert!(
        err(Start::Image { x0: small, strength: 0.5 })
            .contains("shape [1, 1, 8, 16], the model's images [1, 1, 16, 16]")
    );
    assert!(err(Start::Between { to_seed: 1, count: 1 }).contains("images 0..2 of an interpolation of 1"));
}
