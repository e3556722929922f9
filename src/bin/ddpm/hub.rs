//! `--model hf:OWNER/NAME[@REVISION][/SUBFOLDER]`: a model folder on the Hugging Face Hub,
//! downloaded by `hf-hub` into huggingface_hub's cache (`HF_HOME`, default ~/.cache/huggingface;
//! `HF_ENDPOINT` for a mirror or a test server), with a progress bar, then read like any folder.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Repo, RepoType};

use ddpm_web::model::{CONFIG, Layout, MODEL_INDEX};
use ddpm_web::{Error, Result};

/// `model` itself, or where it is a Hub id, the local folder of its files (downloaded once).
pub fn local(model: PathBuf) -> Result<PathBuf> {
    match model.to_str().and_then(|s| s.strip_prefix("hf:")) {
        Some(id) => download(&model.display().to_string(), id),
        None => Ok(model),
    }
}

/// An `hf:` id's parts: `OWNER/NAME`, the revision (default main), the subfolder ("" for none).
fn parse(text: &str, id: &str) -> Result<(String, String, String)> {
    let bad = |why: &str| {
        Error::Request(format!(
            "--model {text}: {why}: write hf:OWNER/NAME, optionally @REVISION and /SUBFOLDER (e.g. hf:google/ddpm-cifar10-32)"
        ))
    };
    let (owner, rest) = id.split_once('/').ok_or_else(|| bad("no OWNER/NAME"))?;
    let (name_rev, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let (name, rev) = name_rev.split_once('@').unwrap_or((name_rev, "main"));
    let part = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if !part(owner) || !part(name) {
        return Err(bad("OWNER and NAME take letters, digits, '.', '_' and '-'"));
    }
    if rev.is_empty() {
        return Err(bad("an empty revision"));
    }
    let sub = sub.trim_end_matches('/');
    if sub.split('/').any(|p| p == ".." || p == "." || (!sub.is_empty() && p.is_empty())) {
        return Err(bad(&format!("subfolder {sub:?}")));
    }
    Ok((format!("{owner}/{name}"), rev.to_string(), sub.to_string()))
}

fn download(text: &str, id: &str) -> Result<PathBuf> {
    let (repo_id, revision, sub) = parse(text, id)?;
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| Error::Request(format!("--model {text}: the Hub client did not start: {e}")))?;
    let repo = api.repo(Repo::with_revision(repo_id, RepoType::Model, revision));
    let file = |name: &str| if sub.is_empty() { name.to_string() } else { format!("{sub}/{name}") };
    let flat = get(&repo, text, &file(CONFIG))?;
    let layout = match flat {
        Some(_) => Layout::Flat,
        None if get(&repo, text, &file(MODEL_INDEX))?.is_some() => Layout::Pipeline,
        None => {
            return Err(Error::Request(format!(
                "--model {text}: the repository has neither {} nor {} (not a diffusers model, or a private one)",
                file(CONFIG),
                file(MODEL_INDEX)
            )));
        }
    };
    let config = get(&repo, text, &file(layout.config()))?
        .ok_or_else(|| Error::Request(format!("--model {text}: {} is missing", file(layout.config()))))?;
    get(&repo, text, &file(layout.scheduler()))?;
    let weights = file(layout.weights());
    if get(&repo, text, &weights)?.is_none() {
        let bin = Path::new(&weights).with_extension("bin").display().to_string();
        get(&repo, text, &bin)?.ok_or_else(|| {
            Error::Request(format!("--model {text}: the repository has neither {weights} nor {bin}"))
        })?;
    }
    // Every file of one revision lands in the same snapshot folder, in the repository's layout:
    // the model's folder is the one its config lies in (flat) or two levels up (unet/config.json).
    let depth = Path::new(layout.config()).components().count();
    Ok(config.ancestors().nth(depth).expect("a cached file lies under its snapshot folder").to_path_buf())
}

/// One file of the repository, from the cache or downloaded; None where the Hub has no such file.
fn get(repo: &ApiRepo, text: &str, name: &str) -> Result<Option<PathBuf>> {
    match repo.get(name) {
        Ok(path) => Ok(Some(path)),
        Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::Status(404, _)) => Ok(None),
        Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::Status(401 | 403, _)) => {
            Err(Error::Request(format!(
                "--model {text}: {name}: {e}: no such repository, or a private or gated one (set HF_TOKEN)"
            )))
        }
        Err(e) => Err(Error::Request(format!("--model {text}: {name}: {e}"))),
    }
}
