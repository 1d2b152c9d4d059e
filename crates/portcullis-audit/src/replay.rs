//! Replaying an asciicast: its output events with the pauses between them, bounded.

/// The longest pause `audit replay` ever makes between two events, whatever the recording says.
pub const REPLAY_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The output events of an asciicast v2 recording, for `audit replay`: each with the pause
/// before it (the recording's own, divided by `speed`, capped by `idle_limit` and by
/// [`REPLAY_MAX_PAUSE`]) and its text. The header, input and resize events, and any line that
/// does not read as an event are skipped: a damaged recording replays what it can (`audit
/// verify` is what judges it). A `speed` that is not a positive number counts as 1.
pub fn replay_events(
    cast: &str,
    speed: f64,
    idle_limit: Option<std::time::Duration>,
) -> impl Iterator<Item = (std::time::Duration, String)> + '_ {
    let mut replay = Replay::new(speed, idle_limit);
    cast.lines()
        .skip(1)
        .filter_map(move |line| replay.event(line))
}

/// [`replay_events`] one line at a time, for a recording read in pieces: feed it every line
/// after the header.
#[derive(Debug)]
pub struct Replay {
    speed: f64,
    idle_limit: Option<std::time::Duration>,
    last: f64,
}

impl Replay {
    pub fn new(speed: f64, idle_limit: Option<std::time::Duration>) -> Replay {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        Replay {
            speed,
            idle_limit,
            last: 0.0,
        }
    }

    /// The pause before this line's output and its text, if it is an output event.
    pub fn event(&mut self, line: &str) -> Option<(std::time::Duration, String)> {
        let serde_json::Value::Array(ev) = serde_json::from_str(line).ok()? else {
            return None;
        };
        let (Some(t), Some("o"), Some(text)) = (
            ev.first().and_then(|v| v.as_f64()),
            ev.get(1).and_then(|v| v.as_str()),
            ev.get(2).and_then(|v| v.as_str()),
        ) else {
            return None;
        };
        let mut pause = std::time::Duration::try_from_secs_f64((t - self.last) / self.speed)
            .unwrap_or(if t > self.last {
                REPLAY_MAX_PAUSE
            } else {
                std::time::Duration::ZERO
            })
            .min(REPLAY_MAX_PAUSE);
        if let Some(cap) = self.idle_limit {
            pause = pause.min(cap);
        }
        self.last = t;
        Some((pause, text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn output_events_with_their_pauses() {
        let cast = "{\"version\": 2}\n[0.5, \"o\", \"a\"]\n[0.7, \"i\", \"x\"]\nnot json\n[2.5, \"o\", \"b\"]\n";
        let ev: Vec<_> = replay_events(cast, 2.0, None).collect();
        assert_eq!(
            ev,
            vec![
                (Duration::from_millis(250), "a".to_string()),
                (Duration::from_secs(1), "b".to_string())
            ]
        );
        let capped: Vec<_> = replay_events(cast, 1.0, Some(Duration::from_millis(100))).collect();
        assert!(capped.iter().all(|(p, _)| *p <= Duration::from_millis(100)));
    }

    proptest! {
        #[test]
        fn any_text_and_speed_replay_without_panic(
            cast in "\\PC{0,200}",
            times in proptest::collection::vec(any::<f64>(), 0..6),
            speed in any::<f64>(),
        ) {
            let mut text = format!("{{}}\n{cast}\n");
            for t in &times {
                text.push_str(&format!("[{t:e}, \"o\", \"x\"]\n"));
            }
            for (pause, _) in replay_events(&text, speed, None) {
                prop_assert!(pause <= REPLAY_MAX_PAUSE);
            }
        }
    }
}
