//! Loading and saving weights: both layouts, both attention namings, f16/bf16, the round trip,
//! and a clear error for each kind of bad input.

#![cfg(not(target_family = "wasm"))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Tensor};
use common::*;
use ddpm_web::Error;
use ddpm_web::model::Model;
use ddpm_web::native::files::{load_model, save_model};
use ddpm_web::unet::UNet2DModel;
use ddpm_web::weights::{HostTensor, SaveDtype, named_tensors, read_safetensors, to_safetensors, zeros};

fn dev() -> Device {
    Device::flex()
}

fn tiny_weights() -> BTreeMap<String, HostTensor> {
    let bytes = std::fs::read(tiny_dir().join("diffusion_pytorch_model.safetensors")).unwrap();
    read_safetensors("tiny", &bytes, false).unwrap()
}

/// A flat model folder with the tiny config and the given weights file contents.
fn folder_with(weights: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "scheduler_config.json"] {
        std::fs::copy(tiny_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("diffusion_pytorch_model.safetensors"), weights).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match load_model(dir, &dev()) {
        Ok(_) => panic!("{} loaded, but should have been refused", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn outputs(model: &Model) -> Vec<f32> {
    let inputs = vectors("inputs.safetensors");
    to_vec(model.unet.forward(tensor4(&inputs["x"], &dev()), &inputs["t"].data))
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let model = load_model(&tiny_dir(), &dev()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_model(&model, dir.path(), SaveDtype::F32).unwrap();
    let again = load_model(dir.path(), &dev()).unwrap();
    assert_eq!(outputs(&model), outputs(&again));
    assert_eq!(model.unet.config, again.unet.config, "config.json round trip");
    assert_eq!(model.scheduler.config, again.scheduler.config, "scheduler_config.json round trip");
    // The written file holds exactly the keys diffusers wrote.
    let written = read_safetensors(
        "written",
        &std::fs::read(dir.path().join("diffusion_pytorch_model.safetensors")).unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(written.keys().collect::<Vec<_>>(), tiny_weights().keys().collect::<Vec<_>>());
}

#[test]
fn f16_and_bf16_weights_load() {
    let model = load_model(&tiny_dir(), &dev()).unwrap();
    let reference = outputs(&model);
    let dir = tempfile::tempdir().unwrap();
    save_model(&model, dir.path(), SaveDtype::F16).unwrap();
    let half = load_model(dir.path(), &dev()).unwrap();
    let err = max_abs_diff(&outputs(&half), &reference);
    assert!(err > 0.0 && err < 0.05, "f16 weights give nearly the same outputs (max diff {err})");
    // bf16, written with the safetensors crate directly.
    let raws: Vec<(String, Vec<u8>, Vec<usize>)> = tiny_weights()
        .into_iter()
        .map(|(k, t)| {
            (k, t.data.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(), t.shape)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raws
        .iter()
        .map(|(k, b, s)| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, s.clone(), b).unwrap())
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let bf = load_model(folder_with(&bytes).path(), &dev()).unwrap();
    let err = max_abs_diff(&outputs(&bf), &reference);
    assert!(err < 0.1, "bf16 weights give nearly the same outputs (max diff {err})");
}

#[test]
fn f16_refuses_values_beyond_its_range_naming_the_tensor() {
    let mut w = tiny_weights();
    w.get_mut("conv_in.weight").unwrap().data[3] = 1e6;
    let e = to_safetensors(&w, SaveDtype::F16).unwrap_err().to_string();
    assert!(e.contains("conv_in.weight") && e.contains("1000000") && e.contains("f16"), "{e}");
    assert!(to_safetensors(&w, SaveDtype::F32).is_ok(), "f32 holds it");
}

/// A module of one parameter whose initialiser says when it runs.
#[derive(Module, Debug)]
struct Probe {
    weight: Param<Tensor<2>>,
}

static PROBE_INITIALISED: AtomicBool = AtomicBool::new(false);

#[test]
fn loading_fills_parameters_without_running_their_initialisers() {
    let init = |device: &Device, _| {
        PROBE_INITIALISED.store(true, Ordering::SeqCst);
        Tensor::<2>::zeros([2, 3], device)
    };
    let probe = Probe { weight: Param::uninitialized(ParamId::new(), init, dev(), true, [2, 3].into()) };
    let values = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let file =
        BTreeMap::from([("weight".to_string(), HostTensor { shape: vec![2, 3], data: values.clone() })]);
    let bytes = to_safetensors(&file, SaveDtype::F32).unwrap();
    let loaded = ddpm_web::weights::load(probe, "probe.safetensors", &bytes).unwrap();
    assert_eq!(to_vec(loaded.weight.val()), values);
    // The initialiser's values would only be dropped: on a GPU, a kernel launch per parameter.
    assert!(!PROBE_INITIALISED.load(Ordering::SeqCst), "the initialiser ran during the load");
}

#[test]
fn the_zero_stand_in_has_every_parameter_zero_and_predicts_zero_noise() {
    let model = load_model(&tiny_dir(), &dev()).unwrap();
    let blank = zeros(UNet2DModel::new(&model.unet.config, &dev()));
    assert_eq!(blank.num_params(), model.unet.num_params());
    let params = named_tensors(&blank);
    assert_eq!(params.len(), named_tensors(&model.unet).len());
    for p in params {
        assert!(to_vec(p.tensor).iter().all(|&v| v == 0.0), "{} is not zero", p.key);
    }
    let inputs = vectors("inputs.safetensors");
    let eps = to_vec(blank.forward(tensor4(&inputs["x"], &dev()), &inputs["t"].data));
    assert!(eps.iter().all(|&v| v == 0.0), "conv_out has zero weights and bias");
}

#[test]
fn legacy_attention_names_load() {
    let renamed: BTreeMap<String, HostTensor> = tiny_weights()
        .into_iter()
        .map(|(k, t)| {
            let k = k
                .replace(".to_q.", ".query.")
                .replace(".to_k.", ".key.")
                .replace(".to_v.", ".value.")
                .replace(".to_out.0.", ".proj_attn.");
            (k, t)
        })
        .collect();
    assert!(renamed.keys().any(|k| k.contains(".proj_attn.")), "the test renamed something");
    let dir = folder_with(&to_safetensors(&renamed, SaveDtype::F32).unwrap());
    let legacy = load_model(dir.path(), &dev()).unwrap();
    assert_eq!(outputs(&legacy), outputs(&load_model(&tiny_dir(), &dev()).unwrap()));
}

#[test]
fn pipeline_layout_loads() {
    let root = tempfile::tempdir().unwrap();
    let (unet, sched) = (root.path().join("unet"), root.path().join("scheduler"));
    std::fs::create_dir_all(&unet).unwrap();
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(root.path().join("model_index.json"), r#"{"_class_name":"DDPMPipeline","scheduler":["diffusers","DDPMScheduler"],"unet":["diffusers","UNet2DModel"]}"#).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(tiny_dir().join(f), unet.join(f)).unwrap();
    }
    std::fs::copy(tiny_dir().join("scheduler_config.json"), sched.join("scheduler_config.json")).unwrap();
    let m = load_model(root.path(), &dev()).unwrap();
    assert_eq!(outputs(&m), outputs(&load_model(&tiny_dir(), &dev()).unwrap()));
}

#[test]
fn pytorch_bin_weights_load_in_both_layouts() {
    let reference = outputs(&load_model(&tiny_dir(), &dev()).unwrap());
    assert_eq!(outputs(&load_model(&tiny_bin_dir(), &dev()).unwrap()), reference, "flat layout");
    let root = tempfile::tempdir().unwrap();
    let unet = root.path().join("unet");
    std::fs::create_dir_all(&unet).unwrap();
    std::fs::write(root.path().join("model_index.json"), r#"{"_class_name":"DDPMPipeline"}"#).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.bin"] {
        std::fs::copy(tiny_bin_dir().join(f), unet.join(f)).unwrap();
    }
    assert_eq!(outputs(&load_model(root.path(), &dev()).unwrap()), reference, "pipeline layout");
    // Where both files are there, the safetensors is the one read.
    std::fs::write(unet.join("diffusion_pytorch_model.safetensors"), b"broken").unwrap();
    assert!(load_err(root.path()).contains("diffusion_pytorch_model.safetensors"));
}

#[test]
fn broken_pytorch_bin_is_refused_by_name() {
    let bin = std::fs::read(tiny_bin_dir().join("diffusion_pytorch_model.bin")).unwrap();
    for (what, bytes) in
        [("junk", &b"not a pickle"[..]), ("truncated", &bin[..bin.len() / 2]), ("empty", &b""[..])]
    {
        let dir = folder_with(b"");
        std::fs::remove_file(dir.path().join("diffusion_pytorch_model.safetensors")).unwrap();
        std::fs::write(dir.path().join("diffusion_pytorch_model.bin"), bytes).unwrap();
        let e = load_err(dir.path());
        assert!(e.contains("diffusion_pytorch_model.bin") && e.contains("PyTorch"), "{what}: {e}");
    }
}

#[test]
fn truncated_file_is_refused_by_name() {
    let bytes = std::fs::read(tiny_dir().join("diffusion_pytorch_model.safetensors")).unwrap();
    let dir = folder_with(&bytes[..bytes.len() / 2]);
    let e = load_err(dir.path());
    assert!(
        e.contains("diffusion_pytorch_model.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn header_claiming_more_bytes_than_the_file_has_is_refused() {
    let mut bytes = std::fs::read(tiny_dir().join("diffusion_pytorch_model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    bytes[..8].copy_from_slice(&(n + 1_000_000).to_le_bytes());
    let e = load_err(folder_with(&bytes).path());
    assert!(e.contains("not a valid safetensors file"), "{e}");
    let e = load_err(folder_with(b"tiny").path());
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let mut w = tiny_weights();
    w.insert("conv_in.weight".into(), HostTensor { shape: vec![16, 1, 5, 5], data: vec![0.0; 400] });
    let e = load_err(folder_with(&to_safetensors(&w, SaveDtype::F32).unwrap()).path());
    assert!(
        e.contains("`conv_in.weight`") && e.contains("[16, 1, 3, 3]") && e.contains("[16, 1, 5, 5]"),
        "{e}"
    );
}

#[test]
fn missing_and_unexpected_keys_are_listed() {
    let mut w = tiny_weights();
    w.remove("mid_block.attentions.0.to_q.weight").unwrap();
    w.remove("conv_out.bias").unwrap();
    w.insert("extra.weight".into(), HostTensor { shape: vec![1], data: vec![0.0] });
    let e = load_err(folder_with(&to_safetensors(&w, SaveDtype::F32).unwrap()).path());
    for key in [
        "missing (2)",
        "mid_block.attentions.0.to_q.weight",
        "conv_out.bias",
        "unexpected (1)",
        "extra.weight",
    ] {
        assert!(e.contains(key), "`{key}` not in: {e}");
    }
}

#[test]
fn wrong_dtype_and_non_finite_values_are_refused() {
    let data = 7i64.to_le_bytes().repeat(16);
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![16], &data).unwrap();
    let bytes = safetensors::serialize([("conv_in.bias", view)], None).unwrap();
    let e = load_err(folder_with(&bytes).path());
    assert!(e.contains("`conv_in.bias`") && e.contains("I64"), "{e}");

    let mut w = tiny_weights();
    w.get_mut("conv_in.bias").unwrap().data[3] = f32::NAN;
    let e = load_err(folder_with(&to_safetensors(&w, SaveDtype::F32).unwrap()).path());
    assert!(e.contains("`conv_in.bias`") && e.contains("non-finite"), "{e}");
}

fn config_err(config: &str) -> String {
    let dir = folder_with(&std::fs::read(tiny_dir().join("diffusion_pytorch_model.safetensors")).unwrap());
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    load_err(dir.path())
}

#[test]
fn malformed_or_unsupported_config_is_refused_naming_the_field() {
    let good = std::fs::read_to_string(tiny_dir().join("config.json")).unwrap();
    let e = config_err(&good[..good.len() / 2]);
    assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
    let e = config_err(&good.replace("\"in_channels\": 1", "\"in_channels\": \"one\""));
    assert!(e.contains("`in_channels`") && e.contains("\"one\""), "{e}");
    let e = config_err(
        &good.replace("\"resnet_time_scale_shift\": \"default\"", "\"resnet_time_scale_shift\": \"spatial\""),
    );
    assert!(e.contains("`resnet_time_scale_shift`") && e.contains("spatial"), "{e}");
    let e = config_err(&good.replace("\"num_class_embeds\": null", "\"num_class_embeds\": 10"));
    assert!(e.contains("`num_class_embeds`") && e.contains("10"), "{e}");
    let e = config_err(&good.replace("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\", \"my_new_field\": 3"));
    assert!(e.contains("`act_fn`") && e.contains("gelu"), "{e}");
    let e = config_err(&good.replace("\"act_fn\": \"silu\"", "\"act_fn\": \"silu\", \"my_new_field\": 3"));
    assert!(e.contains("`my_new_field`"), "{e}");
    let e = config_err(
        &good.replace("\"down_block_types\": [", "\"down_block_types\": [\"CrossAttnDownBlock2D\", "),
    );
    assert!(e.contains("down_block_types"), "{e}");
    let e = config_err(&good.replace("\"out_channels\": 1", "\"out_channels\": 2"));
    assert!(
        e.contains("in_channels / out_channels") && e.contains("1 / 2") && e.contains("must be equal"),
        "{e}"
    );
}

#[test]
fn absurd_configs_are_refused_before_anything_is_allocated() {
    let good = std::fs::read_to_string(tiny_dir().join("config.json")).unwrap();
    let sizes = |blocks: &str| good.replace("\"block_out_channels\": [\n    16,\n    32\n  ]", blocks);
    assert_ne!(sizes("X"), good, "the test edits the tiny config's block_out_channels");
    let e = config_err(&sizes("\"block_out_channels\": [8, 8, 8, 8, 8, 8, 8, 8, 8]"));
    assert!(e.contains("9 entries") && e.contains("1 to 8"), "{e}");
    let e = config_err(&sizes("\"block_out_channels\": [16, 65536]"));
    assert!(e.contains("65536") && e.contains("at most 4096"), "{e}");
    let e = config_err(&good.replace("\"sample_size\": 16", "\"sample_size\": 65536"));
    assert!(e.contains("sample_size") && e.contains("at most 2048"), "{e}");
    let e = config_err(
        &sizes("\"block_out_channels\": [4096, 4096]")
            .replace("\"layers_per_block\": 1", "\"layers_per_block\": 8"),
    );
    assert!(e.contains("parameters") && e.contains("at most 1000000000"), "{e}");
}

#[test]
fn missing_folder_and_files_are_named() {
    let e = load_err(Path::new("/no/such/model"));
    assert!(e.contains("/no/such/model") && e.contains("no such folder"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = load_err(empty.path());
    assert!(e.contains("not a diffusers model folder"), "{e}");
    let dir = folder_with(b"");
    std::fs::remove_file(dir.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("diffusion_pytorch_model.safetensors"), "{e}");
    assert!(matches!(load_model(empty.path(), &dev()), Err(Error::Io { .. })));
}
