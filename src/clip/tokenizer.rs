//! OpenAI CLIP's byte-level BPE tokenizer, reimplemented so that it produces
//! exactly the ids of open_clip's `SimpleTokenizer` (open_clip 3.x, default
//! `clean="lower"`), which is itself a copy of OpenAI's `simple_tokenizer.py`.
//! Tokenizers built from a checkpoint's Hugging Face files instead reproduce
//! `transformers`' `CLIPTokenizer` (see "Hugging Face files" below).
//!
//! The text model of a CLIP checkpoint only understands the ids its tokenizer
//! was trained with, so every step of the reference pipeline is reproduced:
//!
//! 1. **Cleaning** (`basic_clean` + `whitespace_clean` + `lower`):
//!    `ftfy.fix_text`, `html.unescape` applied twice, whitespace collapsed to
//!    single spaces with Python's definition of whitespace, then lower-cased.
//! 2. **Pre-tokenisation** with the reference regex (case-insensitive):
//!    `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`.
//! 3. **Byte-level BPE**: each piece's UTF-8 bytes are mapped through GPT-2's
//!    `bytes_to_unicode` table, the last symbol gets the `</w>` end-of-word
//!    marker, and the lowest-ranked adjacent pair is merged until no merge
//!    applies.
//!
//! # What of `ftfy.fix_text` is reproduced
//!
//! All of ftfy's deterministic fixes are implemented with ftfy's default
//! configuration and ordering: HTML-entity decoding (only until the first line
//! containing `<`, like ftfy's `unescape_html="auto"`), C1 control characters
//! read as Windows-1252, Latin ligatures, half/full-width forms, curly quotes,
//! line breaks, ANSI terminal escapes, control-character removal and NFC
//! normalisation, repeated until the text stops changing.
//!
//! Not reproduced, on purpose:
//!
//! * **Mojibake repair** (`fix_encoding`: re-decoding text such as `"sÃ³"` as
//!   UTF-8). It is driven by ftfy's statistical "badness" heuristic over
//!   hundreds of character classes and several legacy codecs; porting it would
//!   mean carrying those tables and codecs for text that essentially never
//!   occurs in captions or class prompts. Such input keeps its garbled
//!   characters here, so its ids differ from open_clip's.
//! * ftfy's **segmenting of lines longer than 1,000,000 characters** and its
//!   surrogate repair (Rust strings cannot hold lone surrogates).
//!
//! Unicode tables (letters, digits, case, NFC) come from the `regex` and
//! `unicode-normalization` crates, which may be a newer Unicode version than
//! the reference's Python: characters assigned only in the newest versions
//! can be classified differently. Assigned-long-ago text is unaffected.
//!
//! HTML entity names are decoded from the HTML 4 set (plus `&apos;` and the
//! upper-case legacy aliases) rather than all 2,231 HTML5 names; numeric
//! character references follow Python's `html.unescape` exactly.
//!
//! # Special-token spelling
//!
//! open_clip names its special tokens `<start_of_text>`/`<end_of_text>`, while
//! OpenAI's original code and Hugging Face files use
//! `<|startoftext|>`/`<|endoftext|>`. The ids are the same (49406/49407); the
//! spelling only matters when the literal marker appears in input text, where
//! it is encoded as the special id.
//!
//! # Hugging Face files
//!
//! `vocab.json` + `merges.txt` or `tokenizer.json` hold the same vocabulary,
//! but `transformers` handles text differently from open_clip, and a
//! checkpoint should be fed the way its own library fed it. Its pipeline
//! (the normaliser and pre-tokenizer of CLIP's `tokenizer.json`) is: take
//! `<|startoftext|>`/`<|endoftext|>` out of the raw text verbatim, then NFC and
//! per-character lower-casing, then the same split regex (case-sensitive) and
//! BPE. There is no ftfy and no HTML unescaping, so `&amp;`, curly quotes,
//! ligatures or full-width letters give different ids than open_clip would.
//! The normaliser stored in a `tokenizer.json` is not interpreted: CLIP's
//! standard one is assumed.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use flate2::read::GzDecoder;
use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// How many merges open_clip (and Hugging Face's `CLIPTokenizer`) read from a
/// merges text file: the vocabulary is 49,152 BPE entries minus the 256 byte
/// symbols and the two special tokens.
const CLIP_MERGE_COUNT: usize = 49152 - 256 - 2;

/// Suffix marking the last symbol of a word.
const END_OF_WORD: &str = "</w>";

/// Start-of-text token as spelled by open_clip's `SimpleTokenizer`.
const OPEN_CLIP_SOT: &str = "<start_of_text>";
/// End-of-text token as spelled by open_clip's `SimpleTokenizer`.
const OPEN_CLIP_EOT: &str = "<end_of_text>";

/// Start-of-text token as spelled by OpenAI and Hugging Face files.
const HF_SOT: &str = "<|startoftext|>";
/// End-of-text token as spelled by OpenAI and Hugging Face files.
const HF_EOT: &str = "<|endoftext|>";

/// The vocabulary that ships with open_clip and OpenAI CLIP.
static EMBEDDED_BPE: &[u8] = include_bytes!("../../assets/bpe_simple_vocab_16e6.txt.gz");

/// Name used for the embedded vocabulary in error messages.
const EMBEDDED_NAME: &str = "<embedded bpe_simple_vocab_16e6.txt.gz>";

/// Why a tokenizer could not be built from vocabulary files. Every variant
/// names the offending file so a user can fix or replace it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file does not exist.
    #[error("tokenizer file {} does not exist", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read tokenizer file {}: {cause}", path.display())]
    Io {
        /// The unreadable file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The file is named or looks like gzip but does not decompress.
    #[error("{} is not a valid gzip file: {cause}", path.display())]
    Gzip {
        /// The corrupt file.
        path: PathBuf,
        /// The decompression error.
        cause: std::io::Error,
    },
    /// The (decompressed) contents are not UTF-8 text.
    #[error("{} is not valid UTF-8 text", path.display())]
    NotUtf8 {
        /// The offending file.
        path: PathBuf,
    },
    /// A merges line does not consist of exactly two symbols.
    #[error("{} line {line}: malformed merge {content:?} (expected two space-separated symbols)", path.display())]
    MalformedMerge {
        /// The merges file.
        path: PathBuf,
        /// 1-based line number (for JSON files: 1-based index in `model.merges`).
        line: usize,
        /// The offending line.
        content: String,
    },
    /// A JSON file does not parse.
    #[error("{} is not valid JSON: {cause}", path.display())]
    Json {
        /// The offending file.
        path: PathBuf,
        /// The parse error.
        cause: serde_json::Error,
    },
    /// The files parse but do not describe a usable CLIP vocabulary.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// CLIP's byte-level BPE tokenizer.
///
/// Cheap to clone (the tables are shared) and safe to use from several threads.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Token string for each id (empty where an id is unused), for `decode`.
    decoder: Vec<String>,
    /// One more than the largest token id.
    vocab_size: usize,
    /// Id of each byte's symbol, and of that symbol with `</w>` appended.
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    /// `(left id, right id)` packed into a `u64` -> `(rank, merged id)`.
    merges: HashMap<u64, (u32, u32)>,
    /// Inverse of `bytes_to_unicode`, for `decode`.
    char_to_byte: HashMap<char, u8>,
    pattern: Regex,
    flavor: Flavor,
    sot_text: &'static str,
    eot_text: &'static str,
    sot: u32,
    eot: u32,
}

/// Whose text handling a tokenizer reproduces. The BPE itself is the same;
/// the references differ in how they clean text and find special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// open_clip's `SimpleTokenizer`: ftfy + HTML unescaping + whitespace
    /// collapsing + lower-casing, special tokens spelled `<start_of_text>`.
    OpenClip,
    /// Hugging Face's CLIP tokenizer (`tokenizer.json` pipeline, also what
    /// `transformers` builds from `vocab.json` + `merges.txt`): special tokens
    /// `<|startoftext|>`/`<|endoftext|>` taken verbatim from the raw text, then
    /// NFC and per-character lower-casing only.
    HuggingFace,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.vocab_size)
            .field("merges", &self.inner.merges.len())
            .field("flavor", &self.inner.flavor)
            .field("sot", &(self.inner.sot, &self.inner.sot_text))
            .field("eot", &(self.inner.eot, &self.inner.eot_text))
            .finish()
    }
}

impl Tokenizer {
    /// The standard CLIP tokenizer (`bpe_simple_vocab_16e6.txt.gz`, embedded in
    /// the binary), as used by OpenAI and open_clip checkpoints. Built once per
    /// process; later calls are a reference-count increment.
    ///
    /// # Panics
    ///
    /// Only if the embedded vocabulary is corrupt, which the unit tests rule out.
    #[must_use]
    pub fn clip_default() -> Tokenizer {
        static DEFAULT: OnceLock<Tokenizer> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let name = Path::new(EMBEDDED_NAME);
                decode_file_bytes(name, EMBEDDED_BPE.to_vec(), true)
                    .and_then(|text| Tokenizer::from_bpe_text(name, &text))
                    .unwrap_or_else(|e| panic!("the embedded CLIP vocabulary is corrupt: {e}"))
            })
            .clone()
    }

    /// Builds the tokenizer from an open_clip/OpenAI merges file
    /// (`bpe_simple_vocab_16e6.txt.gz` or any file in that format), gzipped or
    /// plain text. Like the reference, the first line is a header and only the
    /// next 48,894 merges are used; the vocabulary is derived from the merges.
    ///
    /// # Errors
    ///
    /// If the file is missing or unreadable, not valid gzip (when gzipped),
    /// not UTF-8, or has a line that is not a pair of symbols.
    pub fn from_bpe_file(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let path = path.as_ref();
        let gz_name = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        let text = decode_file_bytes(path, read_file(path)?, gz_name)?;
        Tokenizer::from_bpe_text(path, &text)
    }

    /// Builds the tokenizer from Hugging Face `CLIPTokenizer` files:
    /// `vocab.json` (token -> id) and `merges.txt` (a `#version` header line,
    /// then one merge per line; like `CLIPTokenizer`, at most 48,894 are read).
    /// Use this so that a checkpoint is tokenised with its own files; text is
    /// handled as `transformers` does (see the module documentation).
    ///
    /// # Errors
    ///
    /// If a file is missing or unreadable, `vocab.json` is not a JSON map of
    /// token to id, a merges line is not a pair of symbols, or the vocabulary
    /// lacks a byte symbol, a special token or a merge's result.
    pub fn from_vocab_merges(
        vocab_json: impl AsRef<Path>,
        merges_txt: impl AsRef<Path>,
    ) -> Result<Tokenizer, TokenizerError> {
        let (vocab_path, merges_path) = (vocab_json.as_ref(), merges_txt.as_ref());
        let vocab_text = decode_file_bytes(vocab_path, read_file(vocab_path)?, false)?;
        let encoder: HashMap<String, u32> =
            serde_json::from_str(&vocab_text).map_err(|source| TokenizerError::Json {
                path: vocab_path.to_path_buf(),
                cause: source,
            })?;
        let merges_text = decode_file_bytes(merges_path, read_file(merges_path)?, false)?;
        // `CLIPTokenizer` strips the whole file before splitting it into lines.
        let merges = parse_merge_lines(merges_path, merges_text.trim())?;
        build(vocab_path, &encoder, &merges, Flavor::HuggingFace)
    }

    /// Builds the tokenizer from a Hugging Face `tokenizer.json` (`model.vocab`
    /// and all of `model.merges`; merges may be `"a b"` strings or `["a", "b"]`
    /// pairs). Special tokens missing from `model.vocab` are taken from
    /// `added_tokens`. Text is handled as `transformers` does (see the module
    /// documentation).
    ///
    /// # Errors
    ///
    /// If the file is missing, unreadable or not JSON, is not a BPE model with
    /// CLIP's `</w>` word ends, has a malformed merge, or its vocabulary lacks
    /// a byte symbol, a special token or a merge's result.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let path = path.as_ref();
        let text = decode_file_bytes(path, read_file(path)?, false)?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
                path: path.to_path_buf(),
                cause: source,
            })?;
        let invalid = |problem: String| TokenizerError::Invalid {
            path: path.to_path_buf(),
            problem,
        };

        let model = &json["model"];
        if let Some(kind) = model["type"].as_str()
            && kind != "BPE"
        {
            return Err(invalid(format!(
                "model.type is {kind:?}; CLIP uses \"BPE\""
            )));
        }
        if let Some(suffix) = model["end_of_word_suffix"].as_str()
            && suffix != END_OF_WORD
        {
            return Err(invalid(format!(
                "model.end_of_word_suffix is {suffix:?}; CLIP's BPE needs {END_OF_WORD:?}"
            )));
        }
        if let Some(prefix) = model["continuing_subword_prefix"].as_str()
            && !prefix.is_empty()
        {
            return Err(invalid(format!(
                "model.continuing_subword_prefix is {prefix:?}; CLIP's BPE uses none"
            )));
        }
        let vocab = model["vocab"]
            .as_object()
            .ok_or_else(|| invalid("model.vocab is missing or not an object".into()))?;
        let mut encoder = HashMap::with_capacity(vocab.len() + 2);
        for (token, id) in vocab {
            let id = json_id(id)
                .ok_or_else(|| invalid(format!("model.vocab[{token:?}] is not a token id")))?;
            encoder.insert(token.clone(), id);
        }
        for added in json["added_tokens"].as_array().into_iter().flatten() {
            if let (Some(token), Some(id)) = (added["content"].as_str(), json_id(&added["id"])) {
                encoder.entry(token.to_owned()).or_insert(id);
            }
        }

        let merge_values = model["merges"]
            .as_array()
            .ok_or_else(|| invalid("model.merges is missing or not an array".into()))?;
        let mut merges = Vec::with_capacity(merge_values.len());
        for (index, value) in merge_values.iter().enumerate() {
            let pair = match value {
                serde_json::Value::String(line) => split_merge(line),
                serde_json::Value::Array(parts) => match parts.as_slice() {
                    [serde_json::Value::String(a), serde_json::Value::String(b)] => {
                        Some((a.clone(), b.clone()))
                    }
                    _ => None,
                },
                _ => None,
            };
            merges.push(pair.ok_or_else(|| TokenizerError::MalformedMerge {
                path: path.to_path_buf(),
                line: index + 1,
                content: value.to_string(),
            })?);
        }
        build(path, &encoder, &merges, Flavor::HuggingFace)
    }

    /// Builds from the text of an open_clip merges file: the vocabulary is the
    /// 256 byte symbols, the same with `</w>`, every merge's result, then the
    /// two special tokens.
    fn from_bpe_text(path: &Path, text: &str) -> Result<Tokenizer, TokenizerError> {
        let merges = parse_merge_lines(path, text)?;
        let byte_chars = bytes_to_unicode();
        let mut vocab: Vec<String> = byte_order()
            .map(|b| byte_chars[usize::from(b)].to_string())
            .collect();
        vocab.extend(byte_order().map(|b| format!("{}{END_OF_WORD}", byte_chars[usize::from(b)])));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push(OPEN_CLIP_SOT.to_owned());
        vocab.push(OPEN_CLIP_EOT.to_owned());
        // Like Python's `dict(zip(vocab, range(len(vocab))))`: a repeated
        // string keeps its last id.
        let encoder = vocab.into_iter().zip(0u32..).collect();
        build(path, &encoder, &merges, Flavor::OpenClip)
    }

    /// Encodes text to BPE ids without start/end tokens, exactly as open_clip's
    /// `SimpleTokenizer.encode` (cleaning included), or for Hugging Face files
    /// as `transformers` with `add_special_tokens=False`.
    #[must_use]
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let inner = &*self.inner;
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        match inner.flavor {
            Flavor::OpenClip => inner.encode_normalized(&clean(text), &mut ids),
            Flavor::HuggingFace => {
                let mut rest = text;
                loop {
                    let next = [(inner.sot_text, inner.sot), (inner.eot_text, inner.eot)]
                        .into_iter()
                        .filter_map(|(token, id)| Some((rest.find(token)?, token.len(), id)))
                        .min();
                    let Some((at, len, id)) = next else {
                        inner.encode_normalized(&hf_normalize(rest), &mut ids);
                        break;
                    };
                    inner.encode_normalized(&hf_normalize(&rest[..at]), &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
            }
        }
        ids
    }

    /// The model input for one text: `[sot, ..., eot]`, cut to
    /// `context_length` with `eot` kept as the last token (as open_clip does,
    /// so the text model still finds the end of the sequence), then padded
    /// with `pad_id`. open_clip checkpoints pad with 0 and use a context of 77;
    /// Hugging Face's CLIP pads with the `eot` id. A `context_length` of 0
    /// gives an empty vector.
    #[must_use]
    pub fn tokenize(&self, text: &str, context_length: usize, pad_id: u32) -> Vec<u32> {
        if context_length == 0 {
            return Vec::new();
        }
        let mut tokens = Vec::with_capacity(context_length.max(2));
        tokens.push(self.inner.sot);
        tokens.extend(self.encode(text));
        tokens.push(self.inner.eot);
        if tokens.len() > context_length {
            tokens.truncate(context_length);
            tokens[context_length - 1] = self.inner.eot;
        }
        tokens.resize(context_length, pad_id);
        tokens
    }

    /// [`Tokenizer::tokenize`] for each text, e.g. a batch of prompts.
    #[must_use]
    pub fn tokenize_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
        pad_id: u32,
    ) -> Vec<Vec<u32>> {
        texts
            .iter()
            .map(|text| self.tokenize(text.as_ref(), context_length, pad_id))
            .collect()
    }

    /// Id of the start-of-text token (49406 for CLIP).
    #[must_use]
    pub fn sot_id(&self) -> u32 {
        self.inner.sot
    }

    /// Id of the end-of-text token (49407 for CLIP); the text model pools its
    /// features at this position.
    #[must_use]
    pub fn eot_id(&self) -> u32 {
        self.inner.eot
    }

    /// One more than the largest token id (49408 for CLIP): the number of rows
    /// the text model's token embedding needs.
    #[must_use]
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size
    }

    /// Turns ids back into text for display, as open_clip's `decode`: word
    /// ends become spaces, special tokens appear as their spelling, and invalid
    /// UTF-8 becomes U+FFFD. Ids outside the vocabulary are skipped. Cleaning
    /// is not undone (the text comes back lower-cased).
    #[must_use]
    pub fn decode(&self, ids: &[u32]) -> String {
        let inner = &*self.inner;
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let Some(token) = inner.decoder.get(id as usize) else {
                continue;
            };
            bytes.extend(
                token
                    .chars()
                    .filter_map(|c| inner.char_to_byte.get(&c).copied()),
            );
        }
        String::from_utf8_lossy(&bytes).replace(END_OF_WORD, " ")
    }
}

impl Inner {
    /// Splits normalised text with the pre-tokenizer regex and appends each
    /// piece's ids (a special-token piece maps straight to its id).
    fn encode_normalized(&self, text: &str, ids: &mut Vec<u32>) {
        let mut word = Vec::new();
        for piece in self.pattern.find_iter(text) {
            match piece.as_str() {
                p if p == self.sot_text => ids.push(self.sot),
                p if p == self.eot_text => ids.push(self.eot),
                p => self.bpe(p.as_bytes(), &mut word, ids),
            }
        }
    }

    /// Appends the BPE ids of one pre-tokenised piece (its UTF-8 bytes) to
    /// `out`, using `word` as scratch space. Repeatedly merges every occurrence
    /// of the lowest-ranked adjacent pair, left to right, like the reference.
    fn bpe(&self, bytes: &[u8], word: &mut Vec<u32>, out: &mut Vec<u32>) {
        let Some((&last, rest)) = bytes.split_last() else {
            return;
        };
        word.clear();
        word.extend(rest.iter().map(|&b| self.byte_ids[usize::from(b)]));
        word.push(self.byte_end_ids[usize::from(last)]);
        while word.len() > 1 {
            let mut best: Option<(u32, u32, u32, u32)> = None;
            for pair in word.windows(2) {
                if let Some(&(rank, merged)) = self.merges.get(&pair_key(pair[0], pair[1]))
                    && best.is_none_or(|(best_rank, ..)| rank < best_rank)
                {
                    best = Some((rank, pair[0], pair[1], merged));
                }
            }
            let Some((_, left, right, merged)) = best else {
                break;
            };
            let (mut read, mut write) = (0, 0);
            while read < word.len() {
                if word[read] == left && word.get(read + 1) == Some(&right) {
                    word[write] = merged;
                    read += 2;
                } else {
                    word[write] = word[read];
                    read += 1;
                }
                write += 1;
            }
            word.truncate(write);
        }
        out.extend_from_slice(word);
    }
}

/// Key of the merge table: a pair of symbol ids.
fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// Assembles the lookup tables from a token -> id map and ranked merges,
/// checking that the files describe a byte-level BPE vocabulary.
fn build(
    path: &Path,
    encoder: &HashMap<String, u32>,
    merges: &[(String, String)],
    flavor: Flavor,
) -> Result<Tokenizer, TokenizerError> {
    let (sot_text, eot_text) = match flavor {
        Flavor::OpenClip => (OPEN_CLIP_SOT, OPEN_CLIP_EOT),
        Flavor::HuggingFace => (HF_SOT, HF_EOT),
    };
    let invalid = |problem: String| TokenizerError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let id_of = |token: &str| {
        encoder
            .get(token)
            .copied()
            .ok_or_else(|| invalid(format!("the vocabulary has no token {token:?}")))
    };

    let byte_chars = bytes_to_unicode();
    let mut byte_ids = [0; 256];
    let mut byte_end_ids = [0; 256];
    for (b, c) in byte_chars.iter().enumerate() {
        byte_ids[b] = id_of(&c.to_string())?;
        byte_end_ids[b] = id_of(&format!("{c}{END_OF_WORD}"))?;
    }
    let sot = id_of(sot_text)?;
    let eot = id_of(eot_text)?;

    let mut merge_table = HashMap::with_capacity(merges.len());
    for ((left, right), rank) in merges.iter().zip(0u32..) {
        // Every symbol of a word is a vocabulary entry, so a merge with a part
        // outside the vocabulary can never apply (the reference skips it too).
        let (Some(&l), Some(&r)) = (encoder.get(left), encoder.get(right)) else {
            continue;
        };
        let joined = format!("{left}{right}");
        let merged = encoder.get(&joined).copied().ok_or_else(|| {
            invalid(format!(
                "merge {} ({left:?} {right:?}) gives {joined:?}, which is not in the vocabulary",
                rank + 1
            ))
        })?;
        // A repeated merge keeps its last rank, as Python's dict does.
        merge_table.insert(pair_key(l, r), (rank, merged));
    }

    let max_id = encoder.values().copied().max().unwrap_or(0) as usize;
    if max_id >= 2 * encoder.len() + 1024 {
        return Err(invalid(format!(
            "token ids are not contiguous: the largest is {max_id} for {} tokens",
            encoder.len()
        )));
    }
    let mut decoder = vec![String::new(); max_id + 1];
    for (token, &id) in encoder {
        decoder[id as usize] = token.clone();
    }
    let base = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
    let pattern = match flavor {
        // open_clip matches its special tokens in the cleaned text, ignoring case.
        Flavor::OpenClip => format!(
            "(?i){}|{}|{base}",
            regex::escape(sot_text),
            regex::escape(eot_text)
        ),
        // Hugging Face takes them out of the raw text first (see `encode`); its
        // split regex is case-sensitive, and a special token's spelling that
        // reaches it is split like any other text by its byte-level step.
        Flavor::HuggingFace => base.to_owned(),
    };
    let pattern =
        Regex::new(&pattern).map_err(|e| invalid(format!("bad pre-tokenizer pattern: {e}")))?;
    let char_to_byte = byte_chars
        .iter()
        .zip(0u8..=255)
        .map(|(&c, b)| (c, b))
        .collect();

    Ok(Tokenizer {
        inner: Arc::new(Inner {
            decoder,
            vocab_size: max_id + 1,
            byte_ids,
            byte_end_ids,
            merges: merge_table,
            char_to_byte,
            pattern,
            flavor,
            sot_text,
            eot_text,
            sot,
            eot,
        }),
    })
}

/// Parses merge lines the way the references slice them: skip the header
/// line, take at most [`CLIP_MERGE_COUNT`] lines. Trailing blank lines (a
/// final newline) are ignored; any other line must hold exactly two symbols.
fn parse_merge_lines(path: &Path, text: &str) -> Result<Vec<(String, String)>, TokenizerError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    while lines.len() > 1 && lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines
        .iter()
        .enumerate()
        .skip(1)
        .take(CLIP_MERGE_COUNT)
        .map(|(index, line)| {
            split_merge(line).ok_or_else(|| TokenizerError::MalformedMerge {
                path: path.to_path_buf(),
                line: index + 1,
                content: (*line).to_owned(),
            })
        })
        .collect()
}

/// Splits `"a b"` into its two symbols; `None` unless there are exactly two.
fn split_merge(line: &str) -> Option<(String, String)> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Some((a.to_owned(), b.to_owned())),
        _ => None,
    }
}

/// A token id in JSON: a non-negative integer that fits `u32`.
fn json_id(value: &serde_json::Value) -> Option<u32> {
    value.as_u64().and_then(|id| u32::try_from(id).ok())
}

/// Reads a whole file, telling a missing file apart from other I/O errors.
fn read_file(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    crate::limits::read_file(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TokenizerError::Missing {
            path: path.to_path_buf(),
        },
        _ => TokenizerError::Io {
            path: path.to_path_buf(),
            cause: source,
        },
    })
}

/// Decompresses gzip data (when the name says `.gz` or the bytes start with
/// the gzip magic number) and checks the text is UTF-8.
fn decode_file_bytes(path: &Path, bytes: Vec<u8>, gz_name: bool) -> Result<String, TokenizerError> {
    let bytes = if gz_name || bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 3);
        GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| TokenizerError::Gzip {
                path: path.to_path_buf(),
                cause: source,
            })?;
        out
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|_| TokenizerError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Bytes whose `bytes_to_unicode` symbol is the byte's own (printable Latin-1)
/// character.
fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Bytes in the order of Python's `bytes_to_unicode()` dict, which fixes the
/// ids 0..256 of the byte symbols: printable bytes first, then the rest.
fn byte_order() -> impl Iterator<Item = u8> {
    (0..=255u8)
        .filter(|&b| is_printable_byte(b))
        .chain((0..=255u8).filter(|&b| !is_printable_byte(b)))
}

/// GPT-2/CLIP's `bytes_to_unicode`: a printable character for every byte, so
/// that BPE symbols never contain whitespace or control characters. Printable
/// bytes map to themselves, the other 68 to U+0100.. in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256;
    for (b, slot) in (0..=255u8).zip(table.iter_mut()) {
        *slot = if is_printable_byte(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are valid characters")
        };
    }
    table
}

/// Hugging Face's CLIP normaliser: NFC, then each character lower-cased on its
/// own (so no final-sigma rule). Its whitespace replacement is left out: the
/// pre-tokenizer drops whitespace anyway.
fn hf_normalize(text: &str) -> String {
    text.nfc().flat_map(char::to_lowercase).collect()
}

/// open_clip's `_clean_lower`: `whitespace_clean(basic_clean(text)).lower()`,
/// where `basic_clean` is `ftfy.fix_text`, `html.unescape` twice, strip.
fn clean(text: &str) -> String {
    let fixed = ftfy::fix_text(text);
    let once = html::unescape(&fixed);
    let twice = html::unescape(&once);
    let mut collapsed = String::with_capacity(twice.len());
    for word in twice.split(is_python_space).filter(|w| !w.is_empty()) {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    collapsed.to_lowercase()
}

/// Python's `str.isspace` (used by `split()` and `strip()`): Unicode
/// `White_Space` plus the information separators U+001C..U+001F, which
/// `char::is_whitespace` does not include.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1C}'..='\u{1F}')
}

/// The Windows-1252 reading of bytes 0x80..=0x9F, keeping the five bytes it
/// leaves undefined as the C1 control characters themselves. This is both
/// ftfy's "sloppy-windows-1252" and `html.unescape`'s table for `&#128;`...
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}', '\u{178}',
];

/// The deterministic parts of `ftfy.fix_text` with its default settings (see
/// the module documentation for what is left out and why).
mod ftfy {
    use super::{CP1252_HIGH, html};
    use regex::Regex;
    use std::borrow::Cow;
    use std::sync::OnceLock;
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

    /// `ftfy.fix_text`: fixes each line (ending after its `\n`) on its own.
    /// As in ftfy, HTML entities are decoded only until the first line that
    /// contains `<` (text that may be real HTML), and not after it.
    pub(super) fn fix_text(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut unescape = true;
        for segment in text.split_inclusive('\n') {
            unescape &= !segment.contains('<');
            out.push_str(&fix_segment(segment, unescape));
        }
        out
    }

    /// ftfy's `fix_and_explain`: applies the fixers in ftfy's order until the
    /// text no longer changes. (`fix_encoding`, the mojibake repair, would run
    /// right after HTML unescaping; see the module documentation.)
    fn fix_segment(segment: &str, unescape: bool) -> String {
        let mut text = segment.to_owned();
        loop {
            let mut fixed: Cow<'_, str> = Cow::Borrowed(&text);
            if unescape && let Cow::Owned(changed) = unescape_html(&fixed) {
                fixed = Cow::Owned(changed);
            }
            for fixer in [
                fix_c1_controls,
                fix_latin_ligatures,
                fix_character_width,
                uncurl_quotes,
                fix_line_breaks,
                remove_terminal_escapes,
                remove_control_chars,
            ] {
                if let Cow::Owned(changed) = fixer(&fixed) {
                    fixed = Cow::Owned(changed);
                }
            }
            if let Cow::Owned(changed) = nfc(&fixed) {
                fixed = Cow::Owned(changed);
            }
            if fixed == text.as_str() {
                return text;
            }
            text = fixed.into_owned();
        }
    }

    /// Unicode NFC, ftfy's final step (`normalization="NFC"`): composes
    /// decomposed accents such as `e` + U+0301 into `é`, which BPE would
    /// otherwise split differently.
    fn nfc(text: &str) -> Cow<'_, str> {
        if is_nfc_quick(text.chars()) == IsNormalized::Yes {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(text.nfc().collect())
        }
    }

    /// Replaces each character for which `map` returns `Some`; borrows
    /// when nothing changes.
    fn map_chars(text: &str, map: impl Fn(char) -> Option<&'static str>) -> Cow<'_, str> {
        let Some(first) = text.char_indices().find(|&(_, c)| map(c).is_some()) else {
            return Cow::Borrowed(text);
        };
        let mut out = String::with_capacity(text.len() + 8);
        out.push_str(&text[..first.0]);
        for c in text[first.0..].chars() {
            match map(c) {
                Some(replacement) => out.push_str(replacement),
                None => out.push(c),
            }
        }
        Cow::Owned(out)
    }

    /// ftfy's `unescape_html`: entities that end in `;`, including
    /// upper-cased ones such as `&EACUTE;`, but not `&amp` without `;`.
    fn unescape_html(text: &str) -> Cow<'_, str> {
        static ENTITY: OnceLock<Regex> = OnceLock::new();
        if !text.contains('&') {
            return Cow::Borrowed(text);
        }
        let entity = ENTITY
            .get_or_init(|| Regex::new("&#?[0-9A-Za-z]{1,24};").expect("valid entity pattern"));
        entity.replace_all(text, |caps: &regex::Captures<'_>| {
            let whole = &caps[0];
            if whole.starts_with("&#") {
                // A numeric reference is decoded only if `html.unescape`
                // consumed it whole, semicolon included.
                let decoded = html::unescape(whole);
                if decoded.contains(';') {
                    whole.to_owned()
                } else {
                    decoded.into_owned()
                }
            } else {
                html::ftfy_named_entity(&whole[1..whole.len() - 1])
                    .unwrap_or_else(|| whole.to_owned())
            }
        })
    }

    /// ftfy's `fix_c1_controls`: U+0080..U+009F are almost always
    /// Windows-1252 bytes decoded as Latin-1.
    fn fix_c1_controls(text: &str) -> Cow<'_, str> {
        if !text.chars().any(|c| matches!(c, '\u{80}'..='\u{9F}')) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(
            text.chars()
                .map(|c| match c {
                    '\u{80}'..='\u{9F}' => CP1252_HIGH[c as usize - 0x80],
                    _ => c,
                })
                .collect(),
        )
    }

    /// ftfy's `fix_latin_ligatures`.
    fn fix_latin_ligatures(text: &str) -> Cow<'_, str> {
        map_chars(text, |c| {
            Some(match c {
                '\u{132}' => "IJ",
                '\u{133}' => "ij",
                '\u{149}' => "\u{2BC}n",
                '\u{1F1}' => "DZ",
                '\u{1F2}' => "Dz",
                '\u{1F3}' => "dz",
                '\u{1C4}' => "D\u{17D}",
                '\u{1C5}' => "D\u{17E}",
                '\u{1C6}' => "d\u{17E}",
                '\u{1C7}' => "LJ",
                '\u{1C8}' => "Lj",
                '\u{1C9}' => "lj",
                '\u{1CA}' => "NJ",
                '\u{1CB}' => "Nj",
                '\u{1CC}' => "nj",
                '\u{FB00}' => "ff",
                '\u{FB01}' => "fi",
                '\u{FB02}' => "fl",
                '\u{FB03}' => "ffi",
                '\u{FB04}' => "ffl",
                '\u{FB05}' => "\u{17F}t",
                '\u{FB06}' => "st",
                _ => return None,
            })
        })
    }

    /// ftfy's `fix_character_width`: the NFKC form of the half/full-width
    /// block U+FF01..U+FFEF, plus U+3000 IDEOGRAPHIC SPACE as a space.
    fn fix_character_width(text: &str) -> Cow<'_, str> {
        /// `(first, last, target of first)` runs, generated from ftfy's
        /// `WIDTH_MAP`; U+FFE3 (two characters) is handled separately.
        #[rustfmt::skip]
        const RUNS: [(u32, u32, u32); 73] = [
    (0x3000, 0x3000, 0x20), (0xFF01, 0xFF5E, 0x21), (0xFF5F, 0xFF60, 0x2985), (0xFF61, 0xFF61, 0x3002),
    (0xFF62, 0xFF63, 0x300C), (0xFF64, 0xFF64, 0x3001), (0xFF65, 0xFF65, 0x30FB), (0xFF66, 0xFF66, 0x30F2),
    (0xFF67, 0xFF67, 0x30A1), (0xFF68, 0xFF68, 0x30A3), (0xFF69, 0xFF69, 0x30A5), (0xFF6A, 0xFF6A, 0x30A7),
    (0xFF6B, 0xFF6B, 0x30A9), (0xFF6C, 0xFF6C, 0x30E3), (0xFF6D, 0xFF6D, 0x30E5), (0xFF6E, 0xFF6E, 0x30E7),
    (0xFF6F, 0xFF6F, 0x30C3), (0xFF70, 0xFF70, 0x30FC), (0xFF71, 0xFF71, 0x30A2), (0xFF72, 0xFF72, 0x30A4),
    (0xFF73, 0xFF73, 0x30A6), (0xFF74, 0xFF74, 0x30A8), (0xFF75, 0xFF76, 0x30AA), (0xFF77, 0xFF77, 0x30AD),
    (0xFF78, 0xFF78, 0x30AF), (0xFF79, 0xFF79, 0x30B1), (0xFF7A, 0xFF7A, 0x30B3), (0xFF7B, 0xFF7B, 0x30B5),
    (0xFF7C, 0xFF7C, 0x30B7), (0xFF7D, 0xFF7D, 0x30B9), (0xFF7E, 0xFF7E, 0x30BB), (0xFF7F, 0xFF7F, 0x30BD),
    (0xFF80, 0xFF80, 0x30BF), (0xFF81, 0xFF81, 0x30C1), (0xFF82, 0xFF82, 0x30C4), (0xFF83, 0xFF83, 0x30C6),
    (0xFF84, 0xFF84, 0x30C8), (0xFF85, 0xFF8A, 0x30CA), (0xFF8B, 0xFF8B, 0x30D2), (0xFF8C, 0xFF8C, 0x30D5),
    (0xFF8D, 0xFF8D, 0x30D8), (0xFF8E, 0xFF8E, 0x30DB), (0xFF8F, 0xFF93, 0x30DE), (0xFF94, 0xFF94, 0x30E4),
    (0xFF95, 0xFF95, 0x30E6), (0xFF96, 0xFF9B, 0x30E8), (0xFF9C, 0xFF9C, 0x30EF), (0xFF9D, 0xFF9D, 0x30F3),
    (0xFF9E, 0xFF9F, 0x3099), (0xFFA0, 0xFFA0, 0x1160), (0xFFA1, 0xFFA2, 0x1100), (0xFFA3, 0xFFA3, 0x11AA),
    (0xFFA4, 0xFFA4, 0x1102), (0xFFA5, 0xFFA6, 0x11AC), (0xFFA7, 0xFFA9, 0x1103), (0xFFAA, 0xFFAF, 0x11B0),
    (0xFFB0, 0xFFB0, 0x111A), (0xFFB1, 0xFFB3, 0x1106), (0xFFB4, 0xFFB4, 0x1121), (0xFFB5, 0xFFBE, 0x1109),
    (0xFFC2, 0xFFC7, 0x1161), (0xFFCA, 0xFFCF, 0x1167), (0xFFD2, 0xFFD7, 0x116D), (0xFFDA, 0xFFDC, 0x1173),
    (0xFFE0, 0xFFE1, 0xA2), (0xFFE2, 0xFFE2, 0xAC), (0xFFE4, 0xFFE4, 0xA6), (0xFFE5, 0xFFE5, 0xA5),
    (0xFFE6, 0xFFE6, 0x20A9), (0xFFE8, 0xFFE8, 0x2502), (0xFFE9, 0xFFEC, 0x2190), (0xFFED, 0xFFED, 0x25A0),
    (0xFFEE, 0xFFEE, 0x25CB),
        ];
        if !text
            .chars()
            .any(|c| c == '\u{3000}' || ('\u{FF01}'..='\u{FFEE}').contains(&c))
        {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let code = c as u32;
            if code == 0xFFE3 {
                out.push_str(" \u{304}");
                continue;
            }
            let index = RUNS.partition_point(|&(_, last, _)| last < code);
            match RUNS.get(index) {
                Some(&(first, _, target)) if first <= code => {
                    out.push(
                        char::from_u32(target + (code - first))
                            .expect("width table holds valid characters"),
                    );
                }
                _ => out.push(c),
            }
        }
        Cow::Owned(out)
    }

    /// ftfy's `uncurl_quotes`.
    fn uncurl_quotes(text: &str) -> Cow<'_, str> {
        map_chars(text, |c| match c {
            '\u{2BC}' | '\u{2018}'..='\u{201B}' => Some("'"),
            '\u{201C}'..='\u{201F}' => Some("\""),
            _ => None,
        })
    }

    /// ftfy's `fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 become `\n`.
    fn fix_line_breaks(text: &str) -> Cow<'_, str> {
        if !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(
            text.replace("\r\n", "\n")
                .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n"),
        )
    }

    /// ftfy's `remove_terminal_escapes` (ANSI colour codes and the like).
    fn remove_terminal_escapes(text: &str) -> Cow<'_, str> {
        static ANSI: OnceLock<Regex> = OnceLock::new();
        if !text.contains('\u{1B}') {
            return Cow::Borrowed(text);
        }
        ANSI.get_or_init(|| Regex::new(r"\x1B\[((?:\d|;)*)([a-zA-Z])").expect("valid ANSI pattern"))
            .replace_all(text, "")
    }

    /// ftfy's `remove_control_chars`: C0 controls other than tab, LF, FF and
    /// CR, DEL, deprecated Arabic format characters, the BOM and interlinear
    /// annotation characters.
    fn remove_control_chars(text: &str) -> Cow<'_, str> {
        map_chars(text, |c| {
            matches!(
                c,
                '\u{0}'..='\u{8}'
                    | '\u{B}'
                    | '\u{E}'..='\u{1F}'
                    | '\u{7F}'
                    | '\u{206A}'..='\u{206F}'
                    | '\u{FEFF}'
                    | '\u{FFF9}'..='\u{FFFC}'
            )
            .then_some("")
        })
    }
}

/// Python's `html.unescape` (HTML5 rules for numeric references; named
/// references from the table below) and ftfy's stricter named-entity lookup.
mod html {
    use super::CP1252_HIGH;
    use regex::Regex;
    use std::borrow::Cow;
    use std::sync::OnceLock;

    /// `(name, character, also recognised without ";")` for the HTML 4
    /// entities, `apos` and HTML5's upper-case legacy aliases, sorted by name
    /// (byte order) for binary search. Values are those of Python's
    /// `html.entities.html5`.
    #[rustfmt::skip]
    const ENTITIES: [(&str, char, bool); 259] = [
    ("AElig", '\u{C6}', true), ("AMP", '&', true), ("Aacute", '\u{C1}', true),
    ("Acirc", '\u{C2}', true), ("Agrave", '\u{C0}', true), ("Alpha", '\u{391}', false),
    ("Aring", '\u{C5}', true), ("Atilde", '\u{C3}', true), ("Auml", '\u{C4}', true),
    ("Beta", '\u{392}', false), ("COPY", '\u{A9}', true), ("Ccedil", '\u{C7}', true),
    ("Chi", '\u{3A7}', false), ("Dagger", '\u{2021}', false), ("Delta", '\u{394}', false),
    ("ETH", '\u{D0}', true), ("Eacute", '\u{C9}', true), ("Ecirc", '\u{CA}', true),
    ("Egrave", '\u{C8}', true), ("Epsilon", '\u{395}', false), ("Eta", '\u{397}', false),
    ("Euml", '\u{CB}', true), ("GT", '>', true), ("Gamma", '\u{393}', false),
    ("Iacute", '\u{CD}', true), ("Icirc", '\u{CE}', true), ("Igrave", '\u{CC}', true),
    ("Iota", '\u{399}', false), ("Iuml", '\u{CF}', true), ("Kappa", '\u{39A}', false),
    ("LT", '<', true), ("Lambda", '\u{39B}', false), ("Mu", '\u{39C}', false),
    ("Ntilde", '\u{D1}', true), ("Nu", '\u{39D}', false), ("OElig", '\u{152}', false),
    ("Oacute", '\u{D3}', true), ("Ocirc", '\u{D4}', true), ("Ograve", '\u{D2}', true),
    ("Omega", '\u{3A9}', false), ("Omicron", '\u{39F}', false), ("Oslash", '\u{D8}', true),
    ("Otilde", '\u{D5}', true), ("Ouml", '\u{D6}', true), ("Phi", '\u{3A6}', false),
    ("Pi", '\u{3A0}', false), ("Prime", '\u{2033}', false), ("Psi", '\u{3A8}', false),
    ("QUOT", '"', true), ("REG", '\u{AE}', true), ("Rho", '\u{3A1}', false),
    ("Scaron", '\u{160}', false), ("Sigma", '\u{3A3}', false), ("THORN", '\u{DE}', true),
    ("Tau", '\u{3A4}', false), ("Theta", '\u{398}', false), ("Uacute", '\u{DA}', true),
    ("Ucirc", '\u{DB}', true), ("Ugrave", '\u{D9}', true), ("Upsilon", '\u{3A5}', false),
    ("Uuml", '\u{DC}', true), ("Xi", '\u{39E}', false), ("Yacute", '\u{DD}', true),
    ("Yuml", '\u{178}', false), ("Zeta", '\u{396}', false), ("aacute", '\u{E1}', true),
    ("acirc", '\u{E2}', true), ("acute", '\u{B4}', true), ("aelig", '\u{E6}', true),
    ("agrave", '\u{E0}', true), ("alefsym", '\u{2135}', false), ("alpha", '\u{3B1}', false),
    ("amp", '&', true), ("and", '\u{2227}', false), ("ang", '\u{2220}', false),
    ("apos", '\'', false), ("aring", '\u{E5}', true), ("asymp", '\u{2248}', false),
    ("atilde", '\u{E3}', true), ("auml", '\u{E4}', true), ("bdquo", '\u{201E}', false),
    ("beta", '\u{3B2}', false), ("brvbar", '\u{A6}', true), ("bull", '\u{2022}', false),
    ("cap", '\u{2229}', false), ("ccedil", '\u{E7}', true), ("cedil", '\u{B8}', true),
    ("cent", '\u{A2}', true), ("chi", '\u{3C7}', false), ("circ", '\u{2C6}', false),
    ("clubs", '\u{2663}', false), ("cong", '\u{2245}', false), ("copy", '\u{A9}', true),
    ("crarr", '\u{21B5}', false), ("cup", '\u{222A}', false), ("curren", '\u{A4}', true),
    ("dArr", '\u{21D3}', false), ("dagger", '\u{2020}', false), ("darr", '\u{2193}', false),
    ("deg", '\u{B0}', true), ("delta", '\u{3B4}', false), ("diams", '\u{2666}', false),
    ("divide", '\u{F7}', true), ("eacute", '\u{E9}', true), ("ecirc", '\u{EA}', true),
    ("egrave", '\u{E8}', true), ("empty", '\u{2205}', false), ("emsp", '\u{2003}', false),
    ("ensp", '\u{2002}', false), ("epsilon", '\u{3B5}', false), ("equiv", '\u{2261}', false),
    ("eta", '\u{3B7}', false), ("eth", '\u{F0}', true), ("euml", '\u{EB}', true),
    ("euro", '\u{20AC}', false), ("exist", '\u{2203}', false), ("fnof", '\u{192}', false),
    ("forall", '\u{2200}', false), ("frac12", '\u{BD}', true), ("frac14", '\u{BC}', true),
    ("frac34", '\u{BE}', true), ("frasl", '\u{2044}', false), ("gamma", '\u{3B3}', false),
    ("ge", '\u{2265}', false), ("gt", '>', true), ("hArr", '\u{21D4}', false),
    ("harr", '\u{2194}', false), ("hearts", '\u{2665}', false), ("hellip", '\u{2026}', false),
    ("iacute", '\u{ED}', true), ("icirc", '\u{EE}', true), ("iexcl", '\u{A1}', true),
    ("igrave", '\u{EC}', true), ("image", '\u{2111}', false), ("infin", '\u{221E}', false),
    ("int", '\u{222B}', false), ("iota", '\u{3B9}', false), ("iquest", '\u{BF}', true),
    ("isin", '\u{2208}', false), ("iuml", '\u{EF}', true), ("kappa", '\u{3BA}', false),
    ("lArr", '\u{21D0}', false), ("lambda", '\u{3BB}', false), ("lang", '\u{27E8}', false),
    ("laquo", '\u{AB}', true), ("larr", '\u{2190}', false), ("lceil", '\u{2308}', false),
    ("ldquo", '\u{201C}', false), ("le", '\u{2264}', false), ("lfloor", '\u{230A}', false),
    ("lowast", '\u{2217}', false), ("loz", '\u{25CA}', false), ("lrm", '\u{200E}', false),
    ("lsaquo", '\u{2039}', false), ("lsquo", '\u{2018}', false), ("lt", '<', true),
    ("macr", '\u{AF}', true), ("mdash", '\u{2014}', false), ("micro", '\u{B5}', true),
    ("middot", '\u{B7}', true), ("minus", '\u{2212}', false), ("mu", '\u{3BC}', false),
    ("nabla", '\u{2207}', false), ("nbsp", '\u{A0}', true), ("ndash", '\u{2013}', false),
    ("ne", '\u{2260}', false), ("ni", '\u{220B}', false), ("not", '\u{AC}', true),
    ("notin", '\u{2209}', false), ("nsub", '\u{2284}', false), ("ntilde", '\u{F1}', true),
    ("nu", '\u{3BD}', false), ("oacute", '\u{F3}', true), ("ocirc", '\u{F4}', true),
    ("oelig", '\u{153}', false), ("ograve", '\u{F2}', true), ("oline", '\u{203E}', false),
    ("omega", '\u{3C9}', false), ("omicron", '\u{3BF}', false), ("oplus", '\u{2295}', false),
    ("or", '\u{2228}', false), ("ordf", '\u{AA}', true), ("ordm", '\u{BA}', true),
    ("oslash", '\u{F8}', true), ("otilde", '\u{F5}', true), ("otimes", '\u{2297}', false),
    ("ouml", '\u{F6}', true), ("para", '\u{B6}', true), ("part", '\u{2202}', false),
    ("permil", '\u{2030}', false), ("perp", '\u{22A5}', false), ("phi", '\u{3C6}', false),
    ("pi", '\u{3C0}', false), ("piv", '\u{3D6}', false), ("plusmn", '\u{B1}', true),
    ("pound", '\u{A3}', true), ("prime", '\u{2032}', false), ("prod", '\u{220F}', false),
    ("prop", '\u{221D}', false), ("psi", '\u{3C8}', false), ("quot", '"', true),
    ("rArr", '\u{21D2}', false), ("radic", '\u{221A}', false), ("rang", '\u{27E9}', false),
    ("raquo", '\u{BB}', true), ("rarr", '\u{2192}', false), ("rceil", '\u{2309}', false),
    ("rdquo", '\u{201D}', false), ("real", '\u{211C}', false), ("reg", '\u{AE}', true),
    ("rfloor", '\u{230B}', false), ("rho", '\u{3C1}', false), ("rlm", '\u{200F}', false),
    ("rsaquo", '\u{203A}', false), ("rsquo", '\u{2019}', false), ("sbquo", '\u{201A}', false),
    ("scaron", '\u{161}', false), ("sdot", '\u{22C5}', false), ("sect", '\u{A7}', true),
    ("shy", '\u{AD}', true), ("sigma", '\u{3C3}', false), ("sigmaf", '\u{3C2}', false),
    ("sim", '\u{223C}', false), ("spades", '\u{2660}', false), ("sub", '\u{2282}', false),
    ("sube", '\u{2286}', false), ("sum", '\u{2211}', false), ("sup", '\u{2283}', false),
    ("sup1", '\u{B9}', true), ("sup2", '\u{B2}', true), ("sup3", '\u{B3}', true),
    ("supe", '\u{2287}', false), ("szlig", '\u{DF}', true), ("tau", '\u{3C4}', false),
    ("there4", '\u{2234}', false), ("theta", '\u{3B8}', false), ("thetasym", '\u{3D1}', false),
    ("thinsp", '\u{2009}', false), ("thorn", '\u{FE}', true), ("tilde", '\u{2DC}', false),
    ("times", '\u{D7}', true), ("trade", '\u{2122}', false), ("uArr", '\u{21D1}', false),
    ("uacute", '\u{FA}', true), ("uarr", '\u{2191}', false), ("ucirc", '\u{FB}', true),
    ("ugrave", '\u{F9}', true), ("uml", '\u{A8}', true), ("upsih", '\u{3D2}', false),
    ("upsilon", '\u{3C5}', false), ("uuml", '\u{FC}', true), ("weierp", '\u{2118}', false),
    ("xi", '\u{3BE}', false), ("yacute", '\u{FD}', true), ("yen", '\u{A5}', true),
    ("yuml", '\u{FF}', true), ("zeta", '\u{3B6}', false), ("zwj", '\u{200D}', false),
    ("zwnj", '\u{200C}', false),
    ];

    fn lookup(name: &str) -> Option<(char, bool)> {
        ENTITIES
            .binary_search_by(|&(n, ..)| n.cmp(name))
            .ok()
            .map(|i| (ENTITIES[i].1, ENTITIES[i].2))
    }

    /// `html.unescape`.
    pub(super) fn unescape(text: &str) -> Cow<'_, str> {
        static CHARREF: OnceLock<Regex> = OnceLock::new();
        if !text.contains('&') {
            return Cow::Borrowed(text);
        }
        let charref = CHARREF.get_or_init(|| {
            Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)")
                .expect("valid charref pattern")
        });
        charref.replace_all(text, |caps: &regex::Captures<'_>| replace_charref(&caps[1]))
    }

    /// Python's `html._replace_charref`, given the reference without its `&`.
    fn replace_charref(reference: &str) -> String {
        if let Some(number) = reference.strip_prefix('#') {
            let number = number.trim_end_matches(';');
            // Too many digits for u32 means far above U+10FFFF.
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => number.parse::<u32>().ok(),
            };
            return numeric_charref(code.unwrap_or(u32::MAX));
        }
        let with_semicolon = reference.ends_with(';');
        let name = reference.trim_end_matches(';');
        if let Some((c, legacy)) = lookup(name)
            && (with_semicolon || legacy)
        {
            return c.to_string();
        }
        // Longest prefix (of at least two characters) that is an entity
        // accepted without ";", as the HTML5 standard decodes "&notit;".
        let ends: Vec<usize> = reference.char_indices().map(|(i, _)| i).collect();
        for &end in ends.iter().skip(2).rev() {
            let prefix = &reference[..end];
            if let Some((c, true)) = lookup(prefix) {
                return format!("{c}{}", &reference[end..]);
            }
        }
        format!("&{reference}")
    }

    /// Numeric references, with the HTML5 replacements for invalid ones.
    fn numeric_charref(code: u32) -> String {
        match code {
            0 | 0xD800..=0xDFFF | 0x11_0000.. => '\u{FFFD}'.to_string(),
            0x0D => "\r".to_owned(),
            0x80..=0x9F => CP1252_HIGH[code as usize - 0x80].to_string(),
            0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0xFDD0..=0xFDEF => String::new(),
            _ if code & 0xFFFE == 0xFFFE => String::new(),
            _ => char::from_u32(code).map(String::from).unwrap_or_default(),
        }
    }

    /// ftfy's `HTML_ENTITIES` lookup for `&name;` (`name` without `&` and
    /// `;`): any entity, or the upper-cased form of an all-lower-case entity
    /// name (`&EACUTE;` is `É`, `&SZLIG;` is `SS`) as long as
    /// `html.unescape` would leave that form alone.
    pub(super) fn ftfy_named_entity(name: &str) -> Option<String> {
        if let Some((c, _)) = lookup(name) {
            return Some(c.to_string());
        }
        let lower = name.to_ascii_lowercase();
        if name.bytes().any(|b| b.is_ascii_lowercase()) || lower == name {
            return None;
        }
        let (c, _) = lookup(&lower)?;
        // `html.unescape("&NAME;")` decodes any legacy-entity prefix of NAME.
        let decodable = (2..=name.len()).any(|end| matches!(lookup(&name[..end]), Some((_, true))));
        (!decodable).then(|| c.to_uppercase().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty scratch folder for file-based tests.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lethe-tokenizer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    /// Ids from open_clip 3.3.0 `SimpleTokenizer().encode(text)`.
    #[test]
    fn encode_matches_open_clip() {
        let tok = Tokenizer::clip_default();
        let cases: &[(&str, &[u32])] = &[
            ("a photo of a cat", &[320, 1125, 539, 320, 2368]),
            ("A PHOTO OF A DOG.", &[320, 1125, 539, 320, 1929, 269]),
            (
                "Hello, world! It's 2024; we're testing CLIP's tokenizer.",
                &[
                    3306, 267, 1002, 256, 585, 568, 273, 271, 273, 275, 282, 649, 982, 4967, 9289,
                    568, 32634, 23895, 269,
                ],
            ),
            (
                "  multiple   spaces\tand\nnewlines  ",
                &[6470, 9006, 537, 1218, 3418],
            ),
            (
                "Tom &amp; Jerry &lt;3 &#39;quoted&#39; &#x27;hex&#x27; &amp;amp;",
                &[
                    2435, 261, 9164, 283, 274, 262, 27706, 262, 262, 31241, 262, 261,
                ],
            ),
            (
                "naïve café résumé",
                &[1097, 35689, 563, 15304, 29106, 7054, 4166],
            ),
            (
                "日本語のテキスト",
                &[
                    39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486,
                ],
            ),
            (
                "emoji 🐱🐶 and symbols ©®™",
                &[16327, 35710, 10631, 537, 25476, 31148, 30857, 11675],
            ),
            ("don’t “curly” quotes", &[847, 713, 257, 20795, 257, 5808]),
            (
                "ﬁne ﬂour, ＬＯＵＤ\u{3000}ＮＯＩＳＥＳ",
                &[3797, 18592, 267, 7464, 31575],
            ),
            (
                "<start_of_text>literal <|endoftext|>",
                &[49406, 24269, 27, 347, 40786, 4160, 91, 285],
            ),
            (
                "numbers 1234567 and 3.14",
                &[
                    6121, 272, 273, 274, 275, 276, 277, 278, 537, 274, 269, 272, 275,
                ],
            ),
            ("", &[]),
        ];
        for &(text, expected) in cases {
            assert_eq!(tok.encode(text), expected, "text {text:?}");
        }
    }

    #[test]
    fn vocabulary_layout_matches_clip() {
        let tok = Tokenizer::clip_default();
        assert_eq!(tok.vocab_size(), 49408);
        assert_eq!(tok.sot_id(), 49406);
        assert_eq!(tok.eot_id(), 49407);
    }

    /// Expected rows from open_clip 3.3.0 `open_clip.tokenize(text)`.
    #[test]
    fn tokenize_pads_and_truncates_like_open_clip() {
        let tok = Tokenizer::clip_default();
        let mut short = vec![49406, 320, 1125, 539, 320, 2368, 49407];
        short.resize(77, 0);
        assert_eq!(tok.tokenize("a photo of a cat", 77, 0), short);

        let long = format!("a photo of a {}big dog", "very ".repeat(80));
        let mut expected = vec![49406, 320, 1125, 539, 320];
        expected.extend([1070; 71]);
        expected.push(49407);
        assert_eq!(tok.tokenize(&long, 77, 0), expected);

        assert_eq!(tok.tokenize("a cat", 1, 0), [49407]);
        assert!(tok.tokenize("a cat", 0, 0).is_empty());
        assert_eq!(
            tok.tokenize_batch(&["a cat", "a photo of a cat"], 4, 49407),
            [vec![49406, 320, 2368, 49407], vec![49406, 320, 1125, 49407]]
        );
    }

    /// Expected strings from open_clip 3.3.0 `_clean_lower(text)`.
    #[test]
    fn cleaning_matches_open_clip() {
        let cases = [
            (
                "&EACUTE;t&EACUTE; BUNDESSTRA&SZLIG;E &NTILDE; &nTILDE; &AMP; &COPY &copy &notit; &notin; &not",
                "été bundesstrasse ñ &ntilde; & © © ¬it; ∉ ¬",
            ),
            (
                "&#0; &#13; &#128; &#x80; &#129; &#xD800; &#x110000; &#99999999999999; &#1; &#x7F; &#xFFFE; &#65 &#x41 &#59; &#x3b;",
                "\u{FFFD} € € \u{81} \u{FFFD} \u{FFFD} \u{FFFD} a a ; ;",
            ),
            ("&amp;amp;amp;amp;lt; nested", "< nested"),
            ("x < y\n&amp;amp;amp;lt;", "x < y &amp;lt;"),
            (
                "&amp;amp;amp;lt;\nx < y\n&amp;amp;amp;lt;",
                "< x < y &amp;lt;",
            ),
            (
                "&apos;x&apos; &hellip; &rsquo;s &frac12; &FRAC12; &bogus; &# &; &ampx &AMPx; &ETH; &eth &ETH",
                "'x' … 's ½ ½ &bogus; &# &; &x &x; ð ð ð",
            ),
            (
                "control\x00chars\x07here\x0bvt\x1cfs\x7fdel \x1b[36;44mcolor\x1b[0m",
                "controlcharsherevtfsdel color",
            ),
            (
                "c1 \u{80} \u{81} \u{85} \u{91}quote\u{92} ligatures ﬁ ﬆ Ĳ ŉ ǅ",
                "c1 € \u{81} … 'quote' ligatures fi st ij 'n dž",
            ),
            (
                "ｶｷ ﾊ ￣ ￦ \u{3000}x\u{2028}y\u{2029}z\r\nw\u{A0}v\u{1680}u\x1fq",
                "カキ ハ \u{304} ₩ x y z w v uq",
            ),
            ("İstanbul ΣΑΣ ΟΔΟΣ. ẞ", "i\u{307}stanbul σας οδος. ß"),
            (
                "cafe\u{301} ｶﾞｷﾞ ﾊﾟ \u{212B} \u{2126} \u{F900}",
                "caf\u{E9} \u{30AC}\u{30AE} \u{30D1} \u{E5} \u{3C9} \u{8C48}",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(clean(text), expected, "text {text:?}");
        }
    }

    /// Expected strings from open_clip 3.3.0 `SimpleTokenizer().decode(ids)`.
    #[test]
    fn decode_matches_open_clip() {
        let tok = Tokenizer::clip_default();
        assert_eq!(
            tok.decode(&tok.encode("Hello, world! naïve 🐱")),
            "hello , world ! naïve 🐱 "
        );
        assert_eq!(
            tok.decode(&[49406, 320, 2368, 49407]),
            "<start_of_text>a cat <end_of_text>"
        );
        assert_eq!(tok.decode(&[320, 99_999]), "a ");
    }

    #[test]
    fn merges_file_constructor_reads_gzip_and_plain_text() {
        let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
        let from_gz = Tokenizer::from_bpe_file(&gz).expect("gz merges");
        let text =
            decode_file_bytes(&gz, std::fs::read(&gz).expect("read gz"), true).expect("gunzip");
        let dir = scratch_dir("plain");
        let plain = dir.join("merges.txt");
        std::fs::write(&plain, &text).expect("write plain merges");
        let from_plain = Tokenizer::from_bpe_file(&plain).expect("plain merges");
        let sample = "A photo of the Eiffel tower, at night!";
        let expected = Tokenizer::clip_default().tokenize(sample, 77, 0);
        assert_eq!(from_gz.tokenize(sample, 77, 0), expected);
        assert_eq!(from_plain.tokenize(sample, 77, 0), expected);
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    /// Hugging Face files carry the same vocabulary; expected ids for the
    /// edge cases come from transformers 5.23 `CLIPTokenizer` loaded from these
    /// files (`tok(text, add_special_tokens=False)`), whose text handling
    /// differs from open_clip's (no ftfy, no HTML unescaping, verbatim special
    /// tokens).
    #[test]
    fn hugging_face_files_follow_transformers() {
        let default = Tokenizer::clip_default();
        let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bpe_simple_vocab_16e6.txt.gz");
        let text =
            decode_file_bytes(&gz, std::fs::read(&gz).expect("read gz"), true).expect("gunzip");
        let merges: Vec<&str> = text.split('\n').skip(1).take(CLIP_MERGE_COUNT).collect();
        let vocab: serde_json::Map<String, serde_json::Value> = default
            .inner
            .decoder
            .iter()
            .zip(0u32..)
            .map(|(token, id)| {
                let token = match token.as_str() {
                    OPEN_CLIP_SOT => HF_SOT,
                    OPEN_CLIP_EOT => HF_EOT,
                    other => other,
                };
                (token.to_owned(), id.into())
            })
            .collect();

        let dir = scratch_dir("hf");
        let vocab_json = serde_json::to_string(&vocab).expect("vocab json");
        std::fs::write(dir.join("vocab.json"), &vocab_json).expect("write vocab.json");
        std::fs::write(
            dir.join("merges.txt"),
            format!("#version: 0.2\n{}\n", merges.join("\n")),
        )
        .expect("write merges");
        let pairs: Vec<serde_json::Value> = merges
            .iter()
            .map(|m| m.split(' ').collect::<Vec<_>>().into())
            .collect();
        let tokenizer_json = |merges: serde_json::Value| {
            serde_json::json!({
                "added_tokens": [{"id": 49406, "content": HF_SOT}, {"id": 49407, "content": HF_EOT}],
                "model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": vocab, "merges": merges},
            })
            .to_string()
        };
        std::fs::write(
            dir.join("strings.json"),
            tokenizer_json(merges.clone().into()),
        )
        .expect("write json");
        std::fs::write(dir.join("pairs.json"), tokenizer_json(pairs.into())).expect("write json");

        let sample = "Hugging Face's <|startoftext|> files; <start_of_text> is plain text here.";
        let mut expected = default.encode("Hugging Face's");
        expected.push(49406);
        // Pieces are encoded independently, so the spaces change nothing but
        // stop the default tokenizer from seeing its own special token.
        expected.extend(default.encode("files; < start_of_text > is plain text here."));
        for tok in [
            Tokenizer::from_vocab_merges(dir.join("vocab.json"), dir.join("merges.txt"))
                .expect("vocab.json + merges.txt"),
            Tokenizer::from_tokenizer_json(dir.join("strings.json")).expect("string merges"),
            Tokenizer::from_tokenizer_json(dir.join("pairs.json")).expect("pair merges"),
        ] {
            assert_eq!(tok.encode(sample), expected);
            assert_eq!(
                (tok.sot_id(), tok.eot_id(), tok.vocab_size()),
                (49406, 49407, 49408)
            );
            let hf_cases: &[(&str, &[u32])] = &[
                (
                    "<|STARTOFTEXT|> x",
                    &[27, 347, 993, 6659, 4160, 91, 285, 343],
                ),
                (
                    "a<|startoftext|>b<|endoftext|>c",
                    &[320, 49406, 321, 49407, 322],
                ),
                (
                    "it'\u{17F} \u{17F} 'S",
                    &[585, 262, 129, 379, 129, 379, 568],
                ),
                (
                    "ΣΑΣ ΟΔΟΣ. İ",
                    &[
                        139, 225, 138, 109, 139, 481, 138, 123, 138, 112, 138, 123, 139, 481, 269,
                        328, 16384,
                    ],
                ),
                (
                    "Tom &amp; Jerry’s ﬁ ＡＢＣ \x00\x1c",
                    &[
                        2435, 261, 6259, 282, 9164, 728, 503, 338, 171, 105, 479, 171, 121, 223,
                        171, 121, 224, 171, 121, 481, 188, 472,
                    ],
                ),
            ];
            for &(text, ids) in hf_cases {
                assert_eq!(tok.encode(text), ids, "text {text:?}");
            }
        }
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = scratch_dir("errors");
        let missing = dir.join("absent.txt.gz");
        assert!(
            matches!(Tokenizer::from_bpe_file(&missing), Err(TokenizerError::Missing { path }) if path == missing)
        );

        let bad_gz = dir.join("bad.txt.gz");
        std::fs::write(&bad_gz, "not gzip").expect("write");
        let err = Tokenizer::from_bpe_file(&bad_gz).expect_err("bad gzip");
        assert!(matches!(err, TokenizerError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("bad.txt.gz"), "{err}");

        let malformed = dir.join("merges.txt");
        std::fs::write(&malformed, "#version: 0.2\ni n\nt h e\n").expect("write");
        let err = Tokenizer::from_bpe_file(&malformed).expect_err("malformed");
        assert!(
            matches!(err, TokenizerError::MalformedMerge { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("line 3"), "{err}");

        let latin1 = dir.join("latin1.txt");
        std::fs::write(&latin1, b"#version\n\xe9 a\n").expect("write");
        assert!(matches!(
            Tokenizer::from_bpe_file(&latin1),
            Err(TokenizerError::NotUtf8 { .. })
        ));

        let bad_json = dir.join("tokenizer.json");
        std::fs::write(&bad_json, "{").expect("write");
        assert!(matches!(
            Tokenizer::from_tokenizer_json(&bad_json),
            Err(TokenizerError::Json { .. })
        ));

        std::fs::write(&bad_json, r#"{"model": {"vocab": {"a": 0}, "merges": []}}"#)
            .expect("write");
        let err = Tokenizer::from_tokenizer_json(&bad_json).expect_err("incomplete vocab");
        assert!(matches!(err, TokenizerError::Invalid { .. }), "{err}");
        std::fs::remove_dir_all(dir).expect("clean up");
    }
}
