//! config.json and scheduler_config.json parsing: any text gives a model or an error, never a
//! panic; small valid configs are also built.
#![no_main]

use burn::tensor::Device;
use ddpm_web::{SchedulerConfig, UNet2DModel, UNetConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = SchedulerConfig::from_json("scheduler_config.json", text) {
        let _ = ddpm_web::Scheduler::new(cfg).timesteps(10);
    }
    if let Ok(cfg) = UNetConfig::from_json("config.json", text) {
        // Building allocates the weights: only small models, so the run measures parsing.
        if cfg.approx_params() < 2_000_000 && cfg.sample_size.iter().all(|s| *s <= 64) {
            let _ = UNet2DModel::new(&cfg, &Device::flex());
        }
    }
});
