//! The noise schedule's curves for `<ddpm-schedule>` (www/schedule.js): the page only draws them.

use js_sys::{Float32Array, Object};
use wasm_bindgen::prelude::*;

use super::{js_err, set};
use crate::config::SchedulerConfig;
use crate::schedule::Schedule;

/// The curves of a `scheduler_config.json` (`name` names it in errors), over t = 0..T-1:
/// {T, beta, alpha_bar, log_snr, beta_tilde}, each a Float32Array of T values.
#[wasm_bindgen]
pub fn schedule_curves(name: &str, scheduler_config_json: &str) -> Result<Object, JsValue> {
    let s = Schedule::new(&SchedulerConfig::from_json(name, scheduler_config_json).map_err(js_err)?);
    let out = Object::new();
    set(&out, "T", s.len() as u32);
    for (key, v) in [
        ("beta", &s.beta),
        ("alpha_bar", &s.alpha_bar),
        ("log_snr", &s.log_snr()),
        ("beta_tilde", &s.beta_tilde()),
    ] {
        set(&out, key, Float32Array::from(&v[..]));
    }
    Ok(out)
}
