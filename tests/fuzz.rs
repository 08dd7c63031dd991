//! The parsers that read what users hand Lethe, fed random and mangled input by proptest: the
//! tokenizer, the dataset-spec parser, the manifest reader and the safetensors reader must
//! answer every input with a value or an error naming the problem — never a panic. Each runs a
//! bounded number of cases (`PROPTEST_CASES` raises it for a longer search).

use std::collections::BTreeMap;
use std::fs;

use lethe::clip::safetensors_io::read_shard;
use lethe::clip::tokenizer::Tokenizer;
use lethe::data::dataset;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_text_tokenizes_to_the_context_length(text in any::<String>(), context in 2usize..80) {
        let tokenizer = Tokenizer::clip_default();
        let tokens = tokenizer.tokenize(&text, context, 0);
        prop_assert_eq!(tokens.len(), context);
        prop_assert!(tokens.iter().all(|&t| t < 49_408));
    }

    #[test]
    fn any_dataset_spec_opens_or_says_why(
        spec in "(shapes|folder|manifest|http|)(:|)(colors|shapes|fruits|planes|/no/such|)(\\?|)((seed|n|size|colour)(=|)(-?[0-9]{0,5}|[a-z]{0,3}|18446744073709551616)(&|)){0,3}"
    ) {
        // Shapes specs are capped at 99,999 scenes here so each case stays quick.
        match dataset::open(&spec) {
            Ok(data) => prop_assert!(!data.items.is_empty() && !data.classes.is_empty()),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn any_manifest_opens_or_names_itself(
        rows in proptest::collection::vec("[a-z0-9,.\"{}:/ \\[\\]]{0,40}", 0..6),
        header in prop_oneof![Just("path,label,caption"), Just("path,label"), Just("label"), Just("")],
        json in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let name = if json { "m.jsonl" } else { "m.csv" };
        let file = dir.path().join(name);
        let mut text = if json { String::new() } else { format!("{header}\n") };
        text.push_str(&rows.join("\n"));
        fs::write(&file, text).unwrap();
        if let Err(error) = dataset::open(&format!("manifest:{}", file.display())) {
            prop_assert!(error.to_string().contains(name), "{}", error);
        }
    }

    #[test]
    fn any_safetensors_bytes_read_or_are_called_damaged(
        header_len in prop_oneof![0u64..300, Just(u64::MAX), Just(u64::MAX / 2)],
        header in "[{}\":,a-zA-Z0-9_\\[\\] ]{0,200}",
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        let mut bytes = header_len.to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(&tail);
        fs::write(&file, &bytes).unwrap();
        let mut tensors = BTreeMap::new();
        if let Err(error) = read_shard(&file, &mut tensors) {
            prop_assert!(error.to_string().contains("model.safetensors"), "{}", error);
        }
    }
}
