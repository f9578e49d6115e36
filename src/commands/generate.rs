//! `assay generate`: one prompt to a chat or completion endpoint; prints the answer, the
//! token counts with their source, and the timing (time to first token, time per output
//! token, end-to-end latency).

use crate::cli::GenerateArgs;
use crate::engine::{ChatMessage, Generation, GenerationParams, GenerationRequest, Prompt};
use crate::error::{Error, Result};

pub fn run(args: &GenerateArgs) -> Result<()> {
    let generator = super::load_generator(&args.model, &args.engine, 1)?;
    let prompt = if args.completion {
        if args.system.is_some() {
            return Err(Error::Usage(
                "--system applies to chat; drop it or drop --completion".into(),
            ));
        }
        Prompt::Text(args.prompt.clone())
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system.clone(),
            });
        }
        messages.push(ChatMessage::user(&args.prompt));
        Prompt::Chat(messages)
    };
    let request = GenerationRequest {
        prompt,
        params: GenerationParams {
            max_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            stop: args.stop.clone(),
            stream: !args.no_stream,
            ignore_eos: false,
        },
    };
    let answer = generator
        .generate(&request)
        .map_err(|e| e.with_completion_flag("--completion"))?;
    if args.json {
        let mut value =
            serde_json::to_value(&answer).map_err(|e| Error::External(e.to_string()))?;
        value["endpoint"] = serde_json::json!(generator.info().model);
        value["ttft"] = serde_json::json!(answer.ttft());
        value["tpot"] = serde_json::json!(tpot(&answer));
        value["latency"] = serde_json::json!(answer.latency());
        println!("{value}");
    } else {
        println!("{}", answer.text);
        eprintln!("{}", summary(&answer, &generator.info().model));
    }
    Ok(())
}

/// Time per output token after the first: (end − first token) / (output tokens − 1).
pub fn tpot(g: &Generation) -> Option<f64> {
    let first = g.timing.first_token?;
    let n = g.tokens.output?;
    (n > 1).then(|| (g.timing.end - first) / (n - 1) as f64)
}

fn summary(g: &Generation, endpoint: &str) -> String {
    let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.1} ms", s * 1e3));
    let count = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
    format!(
        "{endpoint} (served model {}): {} input + {} output tokens ({}), finish {}, TTFT {}, TPOT {}, latency {}, attempts {}",
        g.served_model.as_deref().unwrap_or("?"),
        count(g.tokens.input),
        count(g.tokens.output),
        g.tokens.source.as_deref().unwrap_or("no count"),
        g.finish_reason.as_deref().unwrap_or("?"),
        ms(g.ttft()),
        ms(tpot(g)),
        ms(Some(g.latency())),
        g.timing.attempts,
    )
}
