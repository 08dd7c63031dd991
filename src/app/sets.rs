//! The forget, retain and evaluation sets a user curates in the browsed dataset, the rules that
//! fill them, and the warnings that keep a scenario sane.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::data::dataset::Dataset;

/// Images picked for each role, as indices into the browsed dataset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sets {
    /// Images of what to forget.
    pub forget: BTreeSet<usize>,
    /// Images whose recognition must survive.
    pub retain: BTreeSet<usize>,
    /// Images held out to judge the result.
    pub eval: BTreeSet<usize>,
    /// The subgroup to forget, when the scenario forgets one part of a class.
    pub subgroup: Option<SubgroupSets>,
}

/// A subgroup inside a class (red stars among stars), picked in the browsed dataset by a
/// caption rule. Its pictures go in turn to the forget set (trained on), to the verification
/// pictures (the stop and the soup are judged on them) and to the Target measure; its
/// siblings' (the class's other pictures) and the other classes' go in turn to the retain set
/// and to the Retain measure or, for the other classes, the evaluation split, which
/// calibrates the subgroup method's soup. No picture is both trained on and measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubgroupSets {
    /// What the subgroup is called (`red star`); the method also forgets this name.
    pub name: String,
    /// The class it belongs to.
    pub class: String,
    /// Subgroup pictures kept out of training that the stop and the soup are judged on.
    pub verify: BTreeSet<usize>,
    /// Subgroup pictures kept out of training: the Target measure.
    pub target: BTreeSet<usize>,
    /// Sibling pictures kept out of training: the Retain measure.
    pub siblings: BTreeSet<usize>,
}

impl SubgroupSets {
    /// Replaces `sets` with the subgroup scenario of `class` in `dataset`: the pictures of
    /// `class` whose caption contains `rule` (case-insensitive) are the subgroup, the class's
    /// other pictures its siblings. Errors name what is missing.
    pub fn build(
        sets: &mut Sets,
        dataset: &Dataset,
        class: &str,
        name: &str,
        rule: &str,
    ) -> Result<(), String> {
        let name = name.trim();
        let rule = if rule.trim().is_empty() {
            name
        } else {
            rule.trim()
        };
        if name.is_empty() {
            return Err("Name the subgroup first (e.g. red star).".into());
        }
        let of_class: BTreeSet<usize> = Rule::LabelIs(class.into())
            .select(dataset)
            .into_iter()
            .collect();
        if of_class.is_empty() {
            return Err(format!("The browsed dataset has no picture of '{class}'."));
        }
        let members: BTreeSet<usize> = Rule::CaptionContains(rule.into())
            .select(dataset)
            .into_iter()
            .filter(|i| of_class.contains(i))
            .collect();
        let siblings: Vec<usize> = of_class.difference(&members).copied().collect();
        if members.len() < 3 || siblings.len() < 2 {
            return Err(format!(
                "'{class}' pictures whose caption contains '{rule}': {} (the subgroup), others: {} (its siblings); the subgroup needs at least 3 (to train on, to judge the stop on, to measure) and the siblings 2 (to keep, to measure).",
                members.len(),
                siblings.len()
            ));
        }
        let others: Vec<usize> = (0..dataset.items.len())
            .filter(|i| !of_class.contains(i))
            .collect();
        let members: Vec<usize> = members.into_iter().collect();
        let third = |offset: usize| -> BTreeSet<usize> {
            members.iter().skip(offset).step_by(3).copied().collect()
        };
        let (kept, measured) = alternate(&siblings);
        let (other_kept, calibration) = alternate(&others);
        *sets = Sets {
            forget: third(0),
            retain: kept.into_iter().chain(other_kept).collect(),
            eval: calibration.into_iter().collect(),
            subgroup: Some(SubgroupSets {
                name: name.into(),
                class: class.into(),
                verify: third(1),
                target: third(2),
                siblings: measured.into_iter().collect(),
            }),
        };
        Ok(())
    }
}

/// One of the three sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The forget set.
    Forget,
    /// The retain set.
    Retain,
    /// The evaluation split.
    Eval,
}

impl Role {
    /// All roles, in the order the panel shows them.
    pub const ALL: [Role; 3] = [Role::Forget, Role::Retain, Role::Eval];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Forget => "forget",
            Role::Retain => "retain",
            Role::Eval => "eval",
        }
    }
}

/// A way to pick images without clicking each one.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// Every image of this class.
    LabelIs(String),
    /// Every image of a class not in this list: what is kept when these classes are forgotten.
    LabelIsNone(Vec<String>),
    /// Every image whose caption contains this text (case-insensitive).
    CaptionContains(String),
    /// Every image whose CLIP similarity to a text is at least `threshold`; `scores` holds the
    /// similarity of each dataset item (`None` for unreadable ones).
    SimilarAbove {
        /// Similarity of each item to the text.
        scores: Vec<Option<f32>>,
        /// Minimum cosine similarity.
        threshold: f32,
    },
}

impl Rule {
    /// The dataset items the rule picks.
    pub fn select(&self, dataset: &Dataset) -> Vec<usize> {
        match self {
            Rule::LabelIs(class) => match dataset.classes.iter().position(|c| c == class) {
                Some(label) => (0..dataset.items.len())
                    .filter(|&i| dataset.items[i].label == label)
                    .collect(),
                None => Vec::new(),
            },
            Rule::LabelIsNone(classes) => (0..dataset.items.len())
                .filter(|&i| !classes.contains(&dataset.classes[dataset.items[i].label]))
                .collect(),
            Rule::CaptionContains(text) => {
                let needle = text.to_lowercase();
                (0..dataset.items.len())
                    .filter(|&i| {
                        dataset.items[i]
                            .caption
                            .as_ref()
                            .is_some_and(|c| c.to_lowercase().contains(&needle))
                    })
                    .collect()
            }
            Rule::SimilarAbove { scores, threshold } => scores
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_some_and(|s| s >= *threshold))
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

/// The items at even positions of `items`, and those at odd positions.
fn alternate(items: &[usize]) -> (Vec<usize>, Vec<usize>) {
    (
        items.iter().step_by(2).copied().collect(),
        items.iter().skip(1).step_by(2).copied().collect(),
    )
}

impl Sets {
    /// The set for `role`.
    pub fn get(&self, role: Role) -> &BTreeSet<usize> {
        match role {
            Role::Forget => &self.forget,
            Role::Retain => &self.retain,
            Role::Eval => &self.eval,
        }
    }

    /// The set for `role`, to change.
    pub fn get_mut(&mut self, role: Role) -> &mut BTreeSet<usize> {
        match role {
            Role::Forget => &mut self.forget,
            Role::Retain => &mut self.retain,
            Role::Eval => &mut self.eval,
        }
    }

    /// Adds `items` to the set for `role`; returns how many were new.
    pub fn add(&mut self, role: Role, items: impl IntoIterator<Item = usize>) -> usize {
        let set = self.get_mut(role);
        items.into_iter().filter(|&i| set.insert(i)).count()
    }

    /// Removes `items` from the set for `role`.
    pub fn remove(&mut self, role: Role, items: &BTreeSet<usize>) {
        self.get_mut(role).retain(|i| !items.contains(i));
    }

    /// The role an image has, for colouring the grid (forget wins over retain over eval).
    pub fn role_of(&self, item: usize) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|&role| self.get(role).contains(&item))
    }

    /// Drops every index that is not an item of a dataset of `len` items (after the browsed
    /// dataset changed size).
    pub fn clamp(&mut self, len: usize) {
        for role in Role::ALL {
            self.get_mut(role).retain(|&i| i < len);
        }
    }

    /// Problems with the scenario, in plain words: empty forget target, overlapping sets, and
    /// forget classes the zero-shot head does not know.
    pub fn warnings(
        &self,
        browsed: Option<&Dataset>,
        head_classes: &[String],
        forget_classes: &[String],
        uses_forget_set: bool,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        if forget_classes.is_empty() {
            warnings
                .push("Nothing to forget: name a class or add images to the forget set.".into());
        }
        for class in forget_classes {
            if !head_classes.is_empty() && !head_classes.contains(class) {
                warnings.push(format!(
                    "'{class}' is not a class of the zero-shot head ({}).",
                    head_classes.join(", ")
                ));
            }
        }
        if uses_forget_set && self.forget.is_empty() {
            warnings.push(
                "The forget set's images are to be used, but the forget set is empty.".into(),
            );
        }
        let overlap = self.forget.intersection(&self.retain).count();
        if overlap > 0 {
            warnings.push(format!(
                "{overlap} image(s) are in both the forget and the retain set."
            ));
        }
        let leak = self.forget.intersection(&self.eval).count();
        if leak > 0 {
            warnings.push(format!(
                "{leak} forget image(s) are also in the evaluation split: the result would be judged on what was forgotten from."
            ));
        }
        if let Some(dataset) = browsed
            && uses_forget_set
        {
            let stray: BTreeSet<&str> = self
                .forget
                .iter()
                .filter_map(|&i| dataset.items.get(i))
                .map(|item| dataset.classes[item.label].as_str())
                .filter(|class| !forget_classes.iter().any(|c| c == class))
                .collect();
            if !stray.is_empty() {
                warnings.push(format!(
                    "The forget set has images of classes not being forgotten ({}); they will be ignored.",
                    stray.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        warnings
    }

    /// The classes of the forget-set images, in dataset order ("forget whole classes").
    pub fn forget_classes(&self, dataset: &Dataset) -> Vec<String> {
        let labels: BTreeSet<usize> = self
            .forget
            .iter()
            .filter_map(|&i| dataset.items.get(i).map(|item| item.label))
            .collect();
        labels
            .into_iter()
            .map(|l| dataset.classes[l].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colours() -> Dataset {
        crate::data::dataset::open("shapes:colors?seed=3&n=200").unwrap()
    }

    #[test]
    fn rules_pick_by_label_caption_and_similarity() {
        let data = colours();
        let red = Rule::LabelIs("red".into()).select(&data);
        assert!(!red.is_empty());
        assert!(
            red.iter()
                .all(|&i| data.classes[data.items[i].label] == "red")
        );
        assert!(
            Rule::LabelIs("no such class".into())
                .select(&data)
                .is_empty()
        );
        let kept = Rule::LabelIsNone(vec!["red".into(), "blue".into()]).select(&data);
        let blue = Rule::LabelIs("blue".into()).select(&data);
        assert_eq!(kept.len() + red.len() + blue.len(), data.items.len());
        assert!(kept.iter().all(|i| !red.contains(i) && !blue.contains(i)));
        let captions = Rule::CaptionContains("RED".into()).select(&data);
        assert!(captions.iter().all(|&i| {
            data.items[i]
                .caption
                .as_ref()
                .unwrap()
                .to_lowercase()
                .contains("red")
        }));
        assert!(!captions.is_empty());
        let scores = vec![Some(0.1), None, Some(0.5), Some(0.3)];
        let similar = Rule::SimilarAbove {
            scores,
            threshold: 0.3,
        }
        .select(&data);
        assert_eq!(similar, vec![2, 3]);
    }

    #[test]
    fn warnings_name_overlaps_and_unknown_classes() {
        let data = colours();
        let mut sets = Sets::default();
        let head = data.classes.clone();
        assert!(
            sets.warnings(Some(&data), &head, &["red".into()], false)
                .is_empty()
        );
        let blue = Rule::LabelIs("blue".into()).select(&data);
        sets.add(Role::Forget, blue.clone());
        sets.add(Role::Retain, blue[..2].iter().copied());
        sets.add(Role::Eval, blue[..1].iter().copied());
        let warnings = sets.warnings(Some(&data), &head, &["red".into(), "mauve".into()], true);
        let text = warnings.join("\n");
        assert!(text.contains("2 image(s) are in both"), "{text}");
        assert!(
            text.contains("1 forget image(s) are also in the evaluation"),
            "{text}"
        );
        assert!(text.contains("'mauve' is not a class"), "{text}");
        assert!(
            text.contains("classes not being forgotten (blue)"),
            "{text}"
        );
        assert_eq!(sets.forget_classes(&data), vec!["blue".to_string()]);
        assert_eq!(sets.role_of(blue[0]), Some(Role::Forget));
        sets.clamp(0);
        assert!(sets.forget.is_empty() && sets.retain.is_empty() && sets.eval.is_empty());
    }
}
