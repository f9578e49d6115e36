//! Model profiles: what each embedding model expects around its inputs and how its
//! vectors are read out. One table, so prompts and special tokens are not scattered
//! through the engines; local and remote engines apply the same profile.

use crate::engine::candle::Pooling;
use crate::engine::Role;

/// A token that must end every input before last-token pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndToken {
    /// Whatever the tokenizer produces is used as is.
    None,
    /// The tokenizer's `eos_token` (from `tokenizer_config.json`), appended because the
    /// tokenizer does not add it (E5-Mistral: `</s>`).
    Eos,
    /// This token, appended when the tokenizer did not already end with it.
    Named(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// Lower-case fragments of a model id (`intfloat/e5-mistral-7b-instruct`) that pick
    /// this profile.
    pub id_fragments: &'static [&'static str],
    /// `config.json` model types this profile is the default for.
    pub model_types: &'static [&'static str],
    pub pooling: Pooling,
    pub normalize: bool,
    /// Text before a query; `{instruction}` is replaced by the task's instruction.
    pub query_prompt: &'static str,
    /// Text before a document.
    pub document_prompt: &'static str,
    /// The instruction when a task gives none.
    pub default_instruction: &'static str,
    /// A template around every text (`{text}` marks the input), e.g. a chat template.
    pub text_template: &'static str,
    /// The template around an image (`<image>` marks where the image goes).
    pub image_template: &'static str,
    pub end_token: EndToken,
}

const WEB_SEARCH: &str =
    "Given a web search query, retrieve relevant passages that answer the query";

/// Llama-3 chat turn E5-V wraps its prompts in; the assistant turn is left open so the
/// last token summarises the input.
const E5V_TEXT: &str = "<|start_header_id|>user<|end_header_id|>\n\n{text}\nSummary above sentence in one word: <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n";
const E5V_IMAGE: &str = "<|start_header_id|>user<|end_header_id|>\n\n<image>\nSummary above image in one word: <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n";

/// Every profile assay knows. Order matters: the first match wins.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "e5-mistral",
        id_fragments: &["e5-mistral"],
        model_types: &["mistral"],
        pooling: Pooling::LastToken,
        normalize: true,
        query_prompt: "Instruct: {instruction}\nQuery: ",
        document_prompt: "",
        default_instruction: WEB_SEARCH,
        text_template: "{text}",
        image_template: "",
        end_token: EndToken::Eos,
    },
    Profile {
        name: "qwen3-embedding",
        id_fragments: &["qwen3-embedding"],
        model_types: &["qwen3"],
        pooling: Pooling::LastToken,
        normalize: true,
        query_prompt: "Instruct: {instruction}\nQuery:",
        document_prompt: "",
        default_instruction: WEB_SEARCH,
        text_template: "{text}",
        image_template: "",
        end_token: EndToken::Named("<|endoftext|>"),
    },
    Profile {
        name: "embeddinggemma",
        id_fragments: &["embeddinggemma"],
        model_types: &["gemma3_text"],
        pooling: Pooling::Mean,
        normalize: true,
        query_prompt: "task: search result | query: ",
        document_prompt: "title: none | text: ",
        default_instruction: "",
        text_template: "{text}",
        image_template: "",
        end_token: EndToken::None,
    },
    Profile {
        name: "e5-v",
        id_fragments: &["e5-v"],
        model_types: &["llava_next"],
        pooling: Pooling::LastToken,
        normalize: true,
        query_prompt: "",
        document_prompt: "",
        default_instruction: "",
        text_template: E5V_TEXT,
        image_template: E5V_IMAGE,
        end_token: EndToken::None,
    },
    Profile {
        name: "clip",
        id_fragments: &["clip"],
        model_types: &["clip"],
        // CLIP reads its text vector at the end-of-text token; the tower does that.
        pooling: Pooling::LastToken,
        normalize: true,
        query_prompt: "",
        document_prompt: "",
        default_instruction: "",
        text_template: "{text}",
        image_template: "",
        end_token: EndToken::None,
    },
];

impl Profile {
    /// The profile named `name`.
    pub fn named(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|p| p.name == name)
    }

    /// The profile for a model: by a fragment of its id first, then by its model type.
    pub fn detect(model_id: &str, model_type: &str) -> Option<&'static Profile> {
        let id = model_id.to_lowercase();
        PROFILES
            .iter()
            .find(|p| p.id_fragments.iter().any(|f| id.contains(f)))
            .or_else(|| {
                PROFILES
                    .iter()
                    .find(|p| p.model_types.contains(&model_type))
            })
    }

    /// The names, for error messages and `--help`.
    pub fn names() -> Vec<&'static str> {
        PROFILES.iter().map(|p| p.name).collect()
    }

    /// The exact text the model sees for `text` in `role`.
    pub fn prepare(&self, text: &str, role: Role, instruction: Option<&str>) -> String {
        let prompt = match role {
            Role::Query => {
                let instruction = instruction.unwrap_or(self.default_instruction);
                self.query_prompt.replace("{instruction}", instruction)
            }
            Role::Document => self.document_prompt.to_string(),
        };
        self.text_template
            .replace("{text}", &format!("{prompt}{text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_follow_each_model_card() {
        let e5 = Profile::detect("hf:intfloat/e5-mistral-7b-instruct", "mistral").unwrap();
        assert_eq!(
            e5.prepare("how do bees fly", Role::Query, Some("Retrieve answers")),
            "Instruct: Retrieve answers\nQuery: how do bees fly"
        );
        assert_eq!(e5.prepare("Bees fly.", Role::Document, None), "Bees fly.");

        let qwen = Profile::detect("dir:/m/Qwen3-Embedding-0.6B", "qwen3").unwrap();
        assert_eq!(
            qwen.prepare("q", Role::Query, None),
            format!("Instruct: {WEB_SEARCH}\nQuery:q")
        );

        let gemma = Profile::detect("hf:google/embeddinggemma-300m", "gemma3_text").unwrap();
        assert_eq!(
            gemma.prepare("q", Role::Query, Some("ignored")),
            "task: search result | query: q"
        );
        assert_eq!(
            gemma.prepare("d", Role::Document, None),
            "title: none | text: d"
        );

        let e5v = Profile::detect("hf:royokong/e5-v", "llava_next").unwrap();
        assert!(e5v
            .prepare("a dog", Role::Query, None)
            .starts_with("<|start_header_id|>user<|end_header_id|>\n\na dog\nSummary above sentence in one word: <|eot_id|>"));
    }

    #[test]
    fn detection_prefers_the_id_then_the_model_type() {
        // A Qwen3 checkpoint named as such is Qwen3-Embedding by type alone.
        assert_eq!(
            Profile::detect("dir:/x", "qwen3").unwrap().name,
            "qwen3-embedding"
        );
        assert_eq!(
            Profile::detect("dir:/x/e5-v", "llava_next").unwrap().name,
            "e5-v"
        );
        assert!(Profile::detect("dir:/x", "bert").is_none());
    }
}
