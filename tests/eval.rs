//! The quality report: the Fréchet distance on known cases, and `ddpm classifier` / `ddpm eval`
//! end to end (a few steps, a few images) with their refusals.

#![cfg(not(target_family = "wasm"))]

use std::process::Command;

use burn::tensor::Device;
use ddpm_web::eval::dataset::Dataset;
use ddpm_web::eval::fid::frechet_distance;
use ddpm_web::eval::nearest::nearest_distances;

mod common;

fn ddpm(args: &[&str]) -> std::process::Output {
    let root = common::repo_root();
    Command::new(env!("CARGO_BIN_EXE_ddpm")).current_dir(root).args(args).output().expect("ddpm runs")
}

/// `n` pseudo-random 3-d points (a fixed linear congruential sequence), shifted by `shift`.
fn points(n: usize, shift: f32, mut state: u64) -> Vec<f32> {
    (0..n * 3)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 + shift
        })
        .collect()
}

#[test]
fn frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_moved_one() {
    let a = points(500, 0.0, 1);
    assert!(frechet_distance(&a, &a, 3).abs() < 1e-9);
    let moved: Vec<f32> = a.iter().map(|v| v + 0.5).collect();
    let d = frechet_distance(&moved, &a, 3);
    assert!((d - 3.0 * 0.25).abs() < 1e-6, "same covariance, mean moved by 0.5 in 3 dims: {d}");
    let other = points(500, 0.0, 2);
    let d = frechet_distance(&other, &a, 3);
    assert!(d > 0.0 && d < 0.05, "two samples of one distribution are close: {d}");
}

#[test]
fn nearest_distance_is_zero_for_a_copy_and_the_euclidean_distance_otherwise() {
    let set = |images: Vec<f32>| Dataset { shape: [1, 2, 2], labels: vec![None; images.len() / 4], images };
    let reference = set(vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, -1.0, 0.5, 0.5, -1.0]);
    // A copy of reference image 1; (0, 0, 0, 0.5): 0.5 from image 0; (3, 1, 1, 1): 2 from image 1.
    let queries = set(vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.5, 3.0, 1.0, 1.0, 1.0]);
    let d = nearest_distances(&queries, &reference, &Device::flex()).unwrap();
    assert_eq!(d.len(), 3);
    for (got, want) in d.iter().zip([0.0, 0.5, 2.0]) {
        assert!((got - want).abs() < 1e-3, "{d:?}");
    }
    let other_shape = Dataset { shape: [1, 1, 4], ..set(vec![0.0; 4]) };
    let err = nearest_distances(&other_shape, &reference, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("[1, 1, 4]") && err.contains("[1, 2, 2]"), "{err}");
}

#[test]
fn classifier_then_eval_report_fid_confidence_and_classes() {
    let dir = tempfile::tempdir().unwrap();
    let clf = dir.path().join("clf");
    let model = dir.path().join("model");
    let o = ddpm(&["classifier", "--steps", "3", "--batch", "8", "--out", clf.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("held-out accuracy"));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(clf.join("classifier.json")).unwrap()).unwrap();
    assert_eq!(card["held_out"], 1000);
    let o = ddpm(&[
        "init",
        "--config",
        "configs/mnist/config.json",
        "--scheduler",
        "configs/mnist/scheduler_config.json",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--classifier",
        clf.to_str().unwrap(),
        "--n",
        "6",
        "--steps",
        "2",
        "--batch",
        "4",
    ];
    let o = ddpm(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FID (classifier features)") && out.contains("real vs real at n = 6"), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["classes"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 6);
    assert!(
        report["fid"].as_f64().unwrap() > report["fid_real_vs_real"].as_f64().unwrap(),
        "noise is further from digits than digits are"
    );
    assert!(out.contains("nearest training digit"), "{out}");
    assert!(
        report["nearest_train_median"].as_f64().unwrap()
            > report["nearest_train_median_held_out"].as_f64().unwrap(),
        "an untrained model's samples are further from training digits than held-out digits are: {report}"
    );
    assert_eq!(report["near_copies"], 0.0, "{report}");

    // --samples keeps each batch as a PNG grid; the same run again reads them (same report).
    let kept = dir.path().join("samples");
    let with_store = |seed: &str| {
        let o = ddpm(&[&args[..], &["--samples", kept.to_str().unwrap(), "--seed", seed]].concat());
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (ok, first, err) = with_store("0");
    assert!(ok, "{err}");
    assert_eq!(
        first,
        out.lines().last().unwrap(),
        "kept 8-bit samples give the report of a run without --samples"
    );
    assert_eq!(image::image_dimensions(kept.join("0000.png")).unwrap(), (64, 64), "4 digits in a 2x2 grid");
    assert_eq!(image::image_dimensions(kept.join("0001.png")).unwrap(), (64, 32), "the last 2 digits");
    assert_eq!(with_store("0").1, first);
    // A kept batch is read, not sampled again: blank it and the report changes.
    image::save_buffer(kept.join("0001.png"), &[0u8; 64 * 32], 64, 32, image::ExtendedColorType::L8).unwrap();
    let (ok, blanked, err) = with_store("0");
    assert!(ok && blanked != first, "{err}");
    // Samples of another run (another seed) are refused, not mixed in.
    let (ok, _, err) = with_store("1");
    assert!(!ok && err.contains("holds the samples of another run"), "{err}");
}

#[test]
fn eval_refuses_what_it_cannot_measure() {
    let o = ddpm(&["eval", "--model", "tests/data/tiny", "--n", "6000"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--n must be 2 to 5000"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ddpm(&["eval", "--model", "tests/data/tiny", "--n", "10"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("must make 1x32x32 images, it makes [1, 16, 16]"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
