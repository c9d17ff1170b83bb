//! Reading the daemon's build output: steps, output lines, the image id and the
//! context of a failure. Pure: it sees the decoded messages, never the socket.
//!
//! The classic builder streams text (`Step 2/5 : RUN …`, command output) in
//! `stream` fields, split wherever the daemon flushed. BuildKit sends
//! `moby.buildkit.trace` messages carrying solve status: vertices (the steps, with
//! start, completion, cache and error state) and per-vertex logs. Output lines for
//! BuildKit are numbered like `docker build --progress=plain` (`#3 …`).

use std::collections::{HashMap, HashSet, VecDeque};

use bollard::moby::buildkit::v1::StatusResponse;
use bollard::models::{BuildInfo, BuildInfoAux};

/// Lines of output kept for a failure report.
pub(crate) const TAIL_LINES: usize = 30;

/// Something to tell the observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputEvent {
    Step(String),
    Line(String),
}

/// Replaces secret values in output with `***`.
#[derive(Default)]
pub(crate) struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    /// Values shorter than this are not masked: masking `1` or `ab` everywhere
    /// would destroy the output while protecting nothing.
    const MIN_LEN: usize = 4;

    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter_map(|value| std::str::from_utf8(value).ok())
            .flat_map(|value| {
                // A multi-line secret is masked line by line, as output is.
                value
                    .lines()
                    .map(str::trim)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|value| value.len() >= Self::MIN_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values.dedup();
        Redactor { values }
    }

    pub(crate) fn redact(&self, line: &str) -> String {
        let mut line = line.to_string();
        for value in &self.values {
            if line.contains(value.as_str()) {
                line = line.replace(value.as_str(), "***");
            }
        }
        line
    }
}

#[derive(Default)]
struct Vertex {
    number: usize,
    name: String,
    announced: bool,
    cached: bool,
    completed: bool,
    errored: bool,
    partial: Vec<u8>,
    tail: VecDeque<String>,
    /// Sub-task ids already reported as done.
    finished_tasks: HashSet<String>,
}

/// Accumulates what the daemon said during one build.
pub(crate) struct BuildOutput {
    redactor: Redactor,
    /// Classic output not yet ended by a newline.
    partial: String,
    tail: VecDeque<String>,
    current_step: Option<String>,
    image_id: Option<String>,
    vertices: HashMap<String, Vertex>,
    failed_vertex: Option<String>,
}

/// What a failed build leaves for its error report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureReport {
    pub(crate) step: Option<String>,
    pub(crate) message: String,
    pub(crate) last_lines: Vec<String>,
}

impl BuildOutput {
    pub(crate) fn new(redactor: Redactor) -> Self {
        BuildOutput {
            redactor,
            partial: String::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            current_step: None,
            image_id: None,
            vertices: HashMap::new(),
            failed_vertex: None,
        }
    }

    /// The image id announced by the daemon (`aux.ID`), or read from the classic
    /// `Successfully built` line.
    pub(crate) fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }

    pub(crate) fn last_lines(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Reads one message from the daemon.
    pub(crate) fn push(&mut self, info: &BuildInfo) -> Vec<OutputEvent> {
        let mut events = Vec::new();
        match &info.aux {
            Some(BuildInfoAux::Default(image)) => {
                if let Some(id) = &image.id {
                    self.image_id = Some(id.clone());
                }
            }
            Some(BuildInfoAux::BuildKit(status)) => self.push_status(status, &mut events),
            None => {}
        }
        if let Some(text) = &info.stream {
            self.push_classic_text(text, &mut events);
        }
        // Pull progress and similar status messages: keep the ones without a
        // progress counter, which would otherwise repeat for every chunk.
        if let Some(status) = &info.status
            && (info.progress_detail.is_none() || info.id.is_none())
        {
            let line = match &info.id {
                Some(id) => format!("{id}: {status}"),
                None => status.clone(),
            };
            self.emit_line(line, None, &mut events);
        }
        events
    }

    /// Flushes output not yet ended by a newline (at the end of the build).
    pub(crate) fn finish(&mut self) -> Vec<OutputEvent> {
        let mut events = Vec::new();
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.classic_line(&rest, &mut events);
        }
        let digests: Vec<String> = self
            .vertices
            .iter()
            .filter(|(_, vertex)| !vertex.partial.is_empty())
            .map(|(digest, _)| digest.clone())
            .collect();
        for digest in digests {
            if let Some(vertex) = self.vertices.get_mut(&digest) {
                let rest = std::mem::take(&mut vertex.partial);
                let number = vertex.number;
                let text = String::from_utf8_lossy(&rest).into_owned();
                self.emit_line(format!("#{number} {text}"), Some(&digest), &mut events);
            }
        }
        events
    }

    /// The report for a build that ended with `message` from the daemon.
    pub(crate) fn failure(&self, message: &str) -> FailureReport {
        let failed = self
            .failed_vertex
            .as_ref()
            .and_then(|digest| self.vertices.get(digest));
        let step = failed
            .map(|vertex| vertex.name.clone())
            .or_else(|| self.current_step.clone());
        let last_lines = match failed {
            Some(vertex) if !vertex.tail.is_empty() => vertex.tail.iter().cloned().collect(),
            _ => self.last_lines(),
        };
        FailureReport {
            step,
            message: self.redactor.redact(message.trim()),
            last_lines,
        }
    }

    fn push_classic_text(&mut self, text: &str, events: &mut Vec<OutputEvent>) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            self.classic_line(line, events);
        }
    }

    fn classic_line(&mut self, line: &str, events: &mut Vec<OutputEvent>) {
        if line.starts_with("Step ") && line.contains(" : ") {
            let step = self.redactor.redact(line);
            self.current_step = Some(step.clone());
            events.push(OutputEvent::Step(step));
        }
        if let Some(short) = line.strip_prefix("Successfully built ")
            && self.image_id.is_none()
        {
            self.image_id = Some(short.trim().to_string());
        }
        self.emit_line(line.to_string(), None, events);
    }

    fn push_status(&mut self, status: &StatusResponse, events: &mut Vec<OutputEvent>) {
        for vertex in &status.vertexes {
            let next_number = self.vertices.len() + 1;
            let state = self
                .vertices
                .entry(vertex.digest.clone())
                .or_insert_with(|| Vertex {
                    number: next_number,
                    ..Vertex::default()
                });
            if !vertex.name.is_empty() {
                state.name = self.redactor.redact(&vertex.name);
            }
            let number = state.number;
            let mut lines = Vec::new();
            if vertex.started.is_some() && !state.announced {
                state.announced = true;
                events.push(OutputEvent::Step(state.name.clone()));
                lines.push(format!("#{number} {}", state.name));
            }
            if vertex.cached && !state.cached {
                state.cached = true;
                lines.push(format!("#{number} CACHED"));
            }
            if !vertex.error.is_empty() && !state.errored {
                state.errored = true;
                lines.push(format!("#{number} ERROR: {}", vertex.error));
                if self.failed_vertex.is_none() {
                    self.failed_vertex = Some(vertex.digest.clone());
                }
            } else if vertex.completed.is_some() && !state.completed && !state.cached {
                state.completed = true;
                lines.push(format!("#{number} DONE"));
            }
            for line in lines {
                self.emit_line(line, None, events);
            }
        }
        // Progress of a step's sub-tasks ("transferring context"): reported once,
        // when done, with the amount, as the CLI's plain progress does.
        for progress in &status.statuses {
            let Some(state) = self.vertices.get_mut(&progress.vertex) else {
                continue;
            };
            if progress.completed.is_none() || !state.finished_tasks.insert(progress.id.clone()) {
                continue;
            }
            let line = format!(
                "#{} {}: {} done",
                state.number,
                progress.id.trim_end_matches(':'),
                decimal_bytes(progress.current)
            );
            self.emit_line(line, Some(&progress.vertex), events);
        }
        for log in &status.logs {
            let Some(state) = self.vertices.get_mut(&log.vertex) else {
                continue;
            };
            state.partial.extend_from_slice(&log.msg);
            let number = state.number;
            let mut complete = Vec::new();
            while let Some(end) = state.partial.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = state.partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                complete.push(text.trim_end_matches(['\n', '\r']).to_string());
            }
            for text in complete {
                self.emit_line(format!("#{number} {text}"), Some(&log.vertex), events);
            }
        }
    }

    fn emit_line(&mut self, line: String, vertex: Option<&str>, events: &mut Vec<OutputEvent>) {
        let line = self.redactor.redact(&line);
        push_bounded(&mut self.tail, line.clone());
        if let Some(state) = vertex.and_then(|digest| self.vertices.get_mut(digest)) {
            push_bounded(&mut state.tail, line.clone());
        }
        events.push(OutputEvent::Line(line));
    }
}

/// Bytes in decimal units, the way BuildKit's progress shows them (`20.97MB`).
fn decimal_bytes(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

fn push_bounded(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::moby::buildkit::v1::{Vertex as PbVertex, VertexLog};
    use bollard::models::ImageId;

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_string()),
            ..BuildInfo::default()
        }
    }

    fn trace(status: StatusResponse) -> BuildInfo {
        BuildInfo {
            id: Some("moby.buildkit.trace".to_string()),
            aux: Some(BuildInfoAux::BuildKit(status)),
            ..BuildInfo::default()
        }
    }

    fn vertex(digest: &str, name: &str) -> PbVertex {
        PbVertex {
            digest: digest.to_string(),
            name: name.to_string(),
            ..PbVertex::default()
        }
    }

    fn started(mut v: PbVertex) -> PbVertex {
        v.started = Some(prost_types_timestamp());
        v
    }

    fn prost_types_timestamp() -> bollard_buildkit_proto::google::protobuf::Timestamp {
        bollard_buildkit_proto::google::protobuf::Timestamp::default()
    }

    fn log(digest: &str, text: &str) -> VertexLog {
        VertexLog {
            vertex: digest.to_string(),
            msg: text.as_bytes().to_vec(),
            ..VertexLog::default()
        }
    }

    fn lines(events: &[OutputEvent]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|event| match event {
                OutputEvent::Line(line) => Some(line.as_str()),
                OutputEvent::Step(_) => None,
            })
            .collect()
    }

    #[test]
    fn classic_steps_are_recognised_and_lines_reassembled() {
        let mut output = BuildOutput::new(Redactor::default());
        let mut events = output.push(&stream("Step 1/2 : FROM busybox\n ---> 155"));
        events.extend(output.push(&stream("8a\nStep 2/2 : RUN echo hi\nhi\n")));
        assert_eq!(
            events[0],
            OutputEvent::Step("Step 1/2 : FROM busybox".to_string())
        );
        assert_eq!(
            lines(&events),
            [
                "Step 1/2 : FROM busybox",
                " ---> 1558a",
                "Step 2/2 : RUN echo hi",
                "hi"
            ]
        );
        let report = output.failure("The command '/bin/sh -c false' returned a non-zero code: 1");
        assert_eq!(report.step.as_deref(), Some("Step 2/2 : RUN echo hi"));
        assert_eq!(report.last_lines.last().map(String::as_str), Some("hi"));
    }

    #[test]
    fn the_image_id_comes_from_aux_or_the_success_line() {
        let mut output = BuildOutput::new(Redactor::default());
        output.push(&stream("Successfully built 0123abcd\n"));
        assert_eq!(output.image_id(), Some("0123abcd"));
        output.push(&BuildInfo {
            aux: Some(BuildInfoAux::Default(ImageId {
                id: Some("sha256:feed".to_string()),
            })),
            ..BuildInfo::default()
        });
        assert_eq!(output.image_id(), Some("sha256:feed"));
    }

    #[test]
    fn finished_sub_tasks_are_reported_once_with_their_size() {
        use bollard::moby::buildkit::v1::VertexStatus;
        let mut output = BuildOutput::new(Redactor::default());
        let transfer = |current: i64, done: bool| VertexStatus {
            id: "transferring context:".to_string(),
            vertex: "sha256:ctx".to_string(),
            current,
            completed: done.then(prost_types_timestamp),
            ..VertexStatus::default()
        };
        let mut events = output.push(&trace(StatusResponse {
            vertexes: vec![started(vertex(
                "sha256:ctx",
                "[internal] load build context",
            ))],
            statuses: vec![transfer(1_000, false)],
            ..StatusResponse::default()
        }));
        for status in [transfer(20_971_520, true), transfer(20_971_520, true)] {
            events.extend(output.push(&trace(StatusResponse {
                statuses: vec![status],
                ..StatusResponse::default()
            })));
        }
        assert_eq!(
            lines(&events),
            [
                "#1 [internal] load build context",
                "#1 transferring context: 20.97MB done"
            ]
        );
        assert_eq!(decimal_bytes(999), "999B");
        assert_eq!(decimal_bytes(2_340), "2.34kB");
        assert_eq!(decimal_bytes(3_500_000_000), "3.50GB");
    }

    #[test]
    fn only_the_last_thirty_lines_are_kept() {
        let mut output = BuildOutput::new(Redactor::default());
        for index in 0..100 {
            output.push(&stream(&format!("line {index}\n")));
        }
        let tail = output.last_lines();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 70");
    }

    #[test]
    fn buildkit_vertices_become_numbered_steps_with_their_logs() {
        let mut output = BuildOutput::new(Redactor::default());
        let events = output.push(&trace(StatusResponse {
            vertexes: vec![started(vertex("d1", "[1/2] FROM busybox"))],
            ..StatusResponse::default()
        }));
        assert_eq!(
            events[0],
            OutputEvent::Step("[1/2] FROM busybox".to_string())
        );
        let events = output.push(&trace(StatusResponse {
            vertexes: vec![started(vertex("d2", "[2/2] RUN make"))],
            logs: vec![log("d2", "compil"), log("d2", "ing\nlinked\n")],
            ..StatusResponse::default()
        }));
        assert_eq!(
            lines(&events),
            ["#2 [2/2] RUN make", "#2 compiling", "#2 linked"]
        );
    }

    #[test]
    fn a_buildkit_failure_names_the_failing_vertex_and_its_own_output() {
        let mut output = BuildOutput::new(Redactor::default());
        output.push(&trace(StatusResponse {
            vertexes: vec![
                started(vertex("a", "[a 1/1] RUN other")),
                started(vertex("b", "[b 1/1] RUN false")),
            ],
            logs: vec![log("a", "noise\n"), log("b", "real problem\n")],
            ..StatusResponse::default()
        }));
        let mut failed = started(vertex("b", "[b 1/1] RUN false"));
        failed.error = "exit code: 1".to_string();
        output.push(&trace(StatusResponse {
            vertexes: vec![failed],
            ..StatusResponse::default()
        }));
        let report = output.failure("executor failed running [/bin/sh -c false]: exit code: 1");
        assert_eq!(report.step.as_deref(), Some("[b 1/1] RUN false"));
        assert_eq!(report.last_lines, ["#2 real problem"]);
    }

    #[test]
    fn secrets_are_masked_in_lines_steps_and_failures() {
        let redactor = Redactor::new([b"hunter22".as_slice(), b"ab".as_slice()]);
        let mut output = BuildOutput::new(redactor);
        let events = output.push(&stream("Step 1/1 : RUN echo hunter22\nhunter22 ab\n"));
        assert_eq!(
            events[0],
            OutputEvent::Step("Step 1/1 : RUN echo ***".to_string())
        );
        assert_eq!(lines(&events), ["Step 1/1 : RUN echo ***", "*** ab"]);
        assert_eq!(output.failure("bad hunter22").message, "bad ***");
    }

    #[test]
    fn unterminated_output_is_flushed_at_the_end() {
        let mut output = BuildOutput::new(Redactor::default());
        output.push(&stream("no newline"));
        assert_eq!(lines(&output.finish()), ["no newline"]);
    }
}
