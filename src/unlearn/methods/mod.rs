//! The registry of unlearning methods. Each method is one file here that owns its name, its
//! plain-language summary, its options with their defaults and help, its presets, how it is
//! set up from a prepared scenario, and its step; [`REGISTRY`] lists them. The command line
//! (`lethe methods`, recipes, `lethe bench methods`) and the Method panel read only this
//! module, so a new method appears everywhere once it has a file and a line in the registry.

pub mod amnesiac;
pub mod amns_retain;
mod baseline;
pub mod cliperase;
pub mod emb;
pub mod emmn;
pub mod ga;
pub mod graddiff;
pub mod lip;
pub mod salun;
pub mod slug;
pub mod subgroup;
pub mod ulip;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::job::Method;
use super::synthetic::{SyntheticImages, SyntheticOptions};
use crate::curation::{DataError, DataNeeds, Scenario, Setup, curate};

/// One unlearning method as the rest of Lethe sees it.
pub trait UnlearningMethod: Sync {
    /// Name used in recipes and on the command line.
    fn name(&self) -> &'static str;

    /// Display name.
    fn title(&self) -> &'static str;

    /// What it does, in plain words.
    fn summary(&self) -> &'static str;

    /// What data it needs.
    fn needs(&self) -> &'static str;

    /// Every setting with its default (the paper's), as a recipe's `[method]` keys.
    fn defaults(&self) -> toml::Table;

    /// What a setting (a key of [`Self::defaults`], nested ones included) means, for
    /// tooltips and `lethe methods`.
    fn help(&self, key: &str) -> &'static str;

    /// The settings `preset` changes from the defaults (only those keys, so a recipe stays
    /// short).
    fn preset(&self, preset: Preset) -> toml::Table;

    /// The paper's ablations: each a name ("no relative Fisher") and the settings that switch
    /// one stage or component off, for `lethe bench methods --ablations`.
    fn ablations(&self) -> Vec<(&'static str, toml::Table)> {
        Vec::new()
    }

    /// A warning about a combination of settings that is valid but works against the user.
    fn warning(&self, _settings: &toml::Table) -> Option<&'static str> {
        None
    }

    /// Reads `settings` and says what data the run needs; called before any work starts, so
    /// a bad recipe fails at once with the key at fault.
    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError>;

    /// Sets the method up on a prepared scenario; `seed` fixes everything random in it.
    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError>;
}

/// Every registered method, in the order the command line and the app list them.
pub static REGISTRY: &[&dyn UnlearningMethod] = &[
    &lip::LIP,
    &emb::Emb,
    &ulip::ULIP,
    &cliperase::ClipErase,
    &ga::GRADIENT_ASCENT,
    &graddiff::GRAD_DIFF,
    &emmn::Emmn,
    &amnesiac::AMNESIAC,
    &amns_retain::AMNS_RETAIN,
    &salun::SalUn,
    &slug::Slug,
    &subgroup::Subgroup,
];

/// Why a method cannot be set up or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    /// No registered method has this name.
    #[error("unknown method '{name}': registered methods are {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A setting is unknown, of the wrong type or out of range.
    #[error("method '{method}': {problem}")]
    Settings {
        /// The method's name.
        method: &'static str,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// The scenario's images cannot be used.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A step could not be carried out.
    #[error("method '{method}' failed: {problem}")]
    Failed {
        /// The method's name.
        method: String,
        /// What went wrong.
        problem: String,
    },
}

/// Looks a method up by name.
pub fn find(name: &str) -> Result<&'static dyn UnlearningMethod, MethodError> {
    REGISTRY
        .iter()
        .copied()
        .find(|m| m.name() == name)
        .ok_or_else(|| MethodError::Unknown {
            name: name.to_string(),
            known: REGISTRY
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks `settings` of the named method without setting anything up.
pub fn check(name: &str, settings: &toml::Table) -> Result<(), MethodError> {
    find(name)?.data_needs(settings).map(|_| ())
}

/// What a method that learns contrastively from image–caption pairs asks of the scenario:
/// the pairs, in batches of at least 2 (a contrastive batch needs pairs to tell apart).
pub fn contrastive_pair_needs(
    method: &'static str,
    batch: usize,
) -> Result<DataNeeds, MethodError> {
    if batch < 2 {
        return Err(MethodError::Settings {
            method,
            problem: format!(
                "batch must be at least 2 (a contrastive batch needs pairs to tell apart), got {batch}"
            ),
        });
    }
    Ok(DataNeeds {
        synthetic: SyntheticOptions::default(),
        retain: false,
        pairs: true,
    })
}

/// Every setting of an options type with its default, as `[method]` keys.
pub fn defaults_of<O: Serialize + Default>() -> toml::Table {
    toml::Table::try_from(O::default()).expect("options always serialise")
}

/// Reads a method's typed options from its `[method]` table: keys not given keep their
/// defaults, a key the method does not have is refused by name (nested tables too), and so is
/// a value outside its range ([`crate::limits::SETTINGS`]).
pub fn parse_options<O: DeserializeOwned + Serialize + Default>(
    method: &'static str,
    settings: &toml::Table,
) -> Result<O, MethodError> {
    let defaults = defaults_of::<O>();
    if let Some(key) = unknown_key(settings, &defaults, "") {
        let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
        return Err(MethodError::Settings {
            method,
            problem: format!(
                "unknown setting '{key}' (its settings: {})",
                known.join(", ")
            ),
        });
    }
    crate::limits::check_settings(settings)
        .map_err(|problem| MethodError::Settings { method, problem })?;
    O::deserialize(toml::Value::Table(settings.clone())).map_err(|e| MethodError::Settings {
        method,
        problem: e.to_string().trim().to_string(),
    })
}

/// The first key of `settings` that `defaults` lacks, as a dotted path.
fn unknown_key(settings: &toml::Table, defaults: &toml::Table, prefix: &str) -> Option<String> {
    settings.iter().find_map(|(key, value)| {
        let path = format!("{prefix}{key}");
        match (defaults.get(key), value) {
            (None, _) => Some(path),
            (Some(toml::Value::Table(inner)), toml::Value::Table(given)) => {
                unknown_key(given, inner, &format!("{path}."))
            }
            _ => None,
        }
    })
}

/// `settings` without the keys `method` does not have, for carrying settings over when the
/// user switches method (the Method panel) or compares methods on one recipe (`lethe bench
/// methods`).
pub fn known_settings(method: &dyn UnlearningMethod, settings: &toml::Table) -> toml::Table {
    fn keep(settings: &toml::Table, defaults: &toml::Table) -> toml::Table {
        settings
            .iter()
            .filter_map(|(key, value)| match (defaults.get(key), value) {
                (None, _) => None,
                (Some(toml::Value::Table(inner)), toml::Value::Table(given)) => {
                    Some((key.clone(), toml::Value::Table(keep(given, inner))))
                }
                _ => Some((key.clone(), value.clone())),
            })
            .collect()
    }
    keep(settings, &method.defaults())
}

/// Help for the settings several methods share: the optimiser's (`learning_rate`,
/// `weight_decay`) and how synthetic pictures are made (the `synthetic` table); `""` for
/// any other key. Each method's own `help` falls back to it.
pub fn shared_help(key: &str) -> &'static str {
    match key {
        "learning_rate" => "How big each update of the weights is (Adam's step size).",
        "weight_decay" => "How strongly weights are pulled towards zero at each update.",
        "synthetic" => {
            "How pictures of the class are synthesised from the model when no real ones are given."
        }
        "count" => "Number of synthetic pictures.",
        "threshold" => "Probability of the class each synthetic picture must reach.",
        "step_size" => "Size of each pixel update while synthesising.",
        _ => "",
    }
}

/// A preset's settings from their TOML text.
fn preset_table(text: &str) -> toml::Table {
    text.parse().expect("presets are valid TOML")
}

/// A starting point for a method's settings, for users who do not want to tune knobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's settings: on small models slow, and it may stop short of forgetting.
    Gentle,
    /// A schedule sized for small models such as the demo ones.
    #[default]
    Default,
    /// Forgets while holding the other classes' answers.
    Careful,
    /// Forgets harder, at a higher risk to other classes.
    Aggressive,
}

impl Preset {
    /// Every preset, gentlest first.
    pub const ALL: [Preset; 4] = [
        Preset::Gentle,
        Preset::Default,
        Preset::Careful,
        Preset::Aggressive,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Gentle => "gentle",
            Preset::Default => "default",
            Preset::Careful => "careful",
            Preset::Aggressive => "aggressive",
        }
    }

    /// What the preset is for, in plain words.
    pub fn help(self) -> &'static str {
        match self {
            Preset::Gentle => {
                "The paper's settings: small steps; slow, and a small model may not forget fully."
            }
            Preset::Default => {
                "Sized for small models like the demo ones: forgets in well under a minute."
            }
            Preset::Careful => {
                "Holds the other classes' answers while forgetting (best on real pictures of them: the retain set), leaves the layers every class shares alone, and runs until no picture of the class is recognised."
            }
            Preset::Aggressive => {
                "Bigger and more steps: forgets harder, with more risk to other classes."
            }
        }
    }
}

/// A recipe's `[method]` table: the method's name first, then its settings.
#[derive(Serialize)]
struct MethodTable<'a> {
    name: &'a str,
    #[serde(flatten)]
    settings: toml::Table,
}

/// Every registered method as a commented `[method]` table of its defaults, ready to paste into
/// a recipe; methods are separated by two blank lines.
pub fn describe_all() -> String {
    REGISTRY
        .iter()
        .map(|m| {
            let table = MethodTable {
                name: m.name(),
                settings: m.defaults(),
            };
            let settings = toml::to_string(&BTreeMap::from([("method", table)]))
                .expect("the settings always serialise");
            format!(
                "# {}\n# {}\n# Needs: {}\n{settings}",
                m.title(),
                m.summary(),
                m.needs()
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A method set up for a run, with the synthetic images it made (for previews and reports).
pub struct Prepared {
    /// The method, ready for the job runner.
    pub method: Box<dyn Method>,
    /// Synthetic forget images, one set per forgotten class; empty when real images were given.
    pub synthetic: Vec<SyntheticImages>,
    /// Number of forget images the method works on.
    pub forget_images: usize,
    /// Number of real pictures the stop is judged on (0 without a verification set).
    pub verification_images: usize,
}

/// Sets up the named method on the scenario `setup` describes: reads its settings, builds the
/// data it asked for, and starts it.
pub fn prepare(name: &str, settings: &toml::Table, setup: &Setup) -> Result<Prepared, MethodError> {
    let method = find(name)?;
    let mut needs = method.data_needs(settings)?;
    needs.synthetic.seed = setup.seed;
    let curated = curate(setup, &needs)?;
    let forget_images = curated.scenario.labels.len();
    let verification_images = curated
        .scenario
        .held_out
        .as_ref()
        .map_or(0, |h| h.labels.len());
    Ok(Prepared {
        method: method.start(settings, curated.scenario, setup.seed)?,
        synthetic: curated.synthetic,
        forget_images,
        verification_images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of a settings table, nested tables included.
    fn keys(table: &toml::Table) -> Vec<String> {
        table
            .iter()
            .flat_map(|(key, value)| {
                let nested = value.as_table().map(keys).unwrap_or_default();
                std::iter::once(key.clone()).chain(nested)
            })
            .collect()
    }

    #[test]
    fn every_setting_of_every_method_has_help() {
        for method in REGISTRY {
            let missing: Vec<String> = keys(&method.defaults())
                .into_iter()
                .filter(|key| method.help(key).is_empty())
                .collect();
            assert!(
                missing.is_empty(),
                "{}: no help for {missing:?}",
                method.name()
            );
        }
    }

    #[test]
    fn every_preset_of_every_method_is_valid_for_it() {
        for method in REGISTRY {
            for preset in Preset::ALL {
                method.data_needs(&method.preset(preset)).unwrap();
            }
        }
    }

    #[test]
    fn names_are_unique_and_found() {
        for method in REGISTRY {
            assert_eq!(find(method.name()).unwrap().name(), method.name());
        }
        let error = find("forget-everything").err().unwrap().to_string();
        assert!(
            error.contains("forget-everything")
                && error.contains("lip, emb, ulip, cliperase, ga, graddiff, emmn, amnesiac"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_their_path() {
        let settings: toml::Table = "batch = 2\n[synthetic]\ncuont = 3\n".parse().unwrap();
        let error = check("lip", &settings).unwrap_err().to_string();
        assert!(error.contains("'synthetic.cuont'"), "{error}");
        let settings: toml::Table = "alpha = 2.0".parse().unwrap();
        assert!(check("emb", &settings).is_ok());
        let error = check("lip", &settings).unwrap_err().to_string();
        assert!(error.contains("unknown setting 'alpha'"), "{error}");
    }

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        for (method, text, key) in [
            ("emmn", "noise_step_size = -0.5", "noise_step_size"),
            ("emmn", "noise_weight = nan", "noise_weight"),
            ("salun", "saliency = 0.0", "saliency"),
        ] {
            let settings: toml::Table = text.parse().unwrap();
            let error = check(method, &settings).unwrap_err().to_string();
            assert!(error.contains(key), "{method} {text}: {error}");
        }
    }

    #[test]
    fn switching_method_keeps_only_the_settings_it_knows() {
        let settings: toml::Table = "alpha = 2.0\nbatch = 3\n[synthetic]\ncount = 5\n"
            .parse()
            .unwrap();
        let kept = known_settings(&lip::LIP, &settings);
        assert_eq!(kept, "batch = 3\n[synthetic]\ncount = 5\n".parse().unwrap());
        assert_eq!(known_settings(&emb::Emb, &settings), settings);
    }
}
