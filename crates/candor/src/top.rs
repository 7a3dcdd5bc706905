//! `candor top` (and `candor up`'s view): the live board in the terminal, sorted by trouble,
//! with the selected service's reason, its fds against the limit as a sparkline, its log
//! tail, and keys for start / stop / restart / reset-failed; a job's row says its last result
//! and next run. Fed by the API only: the board and the jobs every second, and at once when
//! the daemon's event stream says something changed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use candor_api::{DaemonInfo, Job, LogEntry, ServiceStatus};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;
use tokio::sync::Notify;

use crate::client::{encode, Client};
use crate::render::jobs::{self as job_words, Clock};

/// Samples of fds kept per service for the sparkline (one a second).
const HISTORY: usize = 120;

/// What quitting means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `candor top`: the daemon goes on.
    Top,
    /// `candor up`: quitting stops every service and the daemon.
    Up,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Start,
    Stop,
    Restart,
    ResetFailed,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::ResetFailed => "reset-failed",
        }
    }
}

#[derive(Default)]
struct App {
    list: Vec<ServiceStatus>,
    info: Option<DaemonInfo>,
    /// The selected service, by name (the order changes as troubles come and go).
    selected: Option<String>,
    fds: HashMap<String, VecDeque<u64>>,
    logs: Vec<LogEntry>,
    /// The jobs on the board, by name (none from a daemon without `GET /v1/jobs`).
    jobs: HashMap<String, Job>,
    /// When the jobs were read (unix ms): their next runs and ages are told from then.
    now_ms: i64,
    help: bool,
    confirm: Option<(Action, String)>,
    message: Option<(bool, String)>,
    unreachable: Option<String>,
    /// `candor up`'s line on how to reach its daemon from another terminal.
    reach: Option<String>,
}

/// How much trouble a state is: the most first.
fn trouble(state: &str) -> u8 {
    match state {
        "failed" => 0,
        "unhealthy" => 1,
        "degraded" => 2,
        "backoff" => 3,
        "stopping" => 4,
        "starting" => 5,
        "exited" => 6,
        "stopped" => 7,
        // A finished job is no trouble: with the running services.
        _ => 8,
    }
}

fn colour(state: &str) -> Color {
    match state {
        "running" => Color::Green,
        "degraded" => Color::Yellow,
        "unhealthy" | "failed" => Color::Red,
        "backoff" | "stopping" => Color::Magenta,
        "starting" => Color::Cyan,
        // A oneshot that completed; a start its condition skipped (dim, as stopped).
        "done" => Color::Green,
        "skipped" => Color::DarkGray,
        _ => Color::Gray,
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

impl App {
    /// By trouble, each group's instances right under it by index.
    fn sort(&mut self) {
        self.list = crate::render::groups::arrange(&self.list, |a, b| {
            (trouble(&a.state), &a.name).cmp(&(trouble(&b.state), &b.name))
        })
        .into_iter()
        .map(|placed| placed.service.clone())
        .collect();
        let keep = self
            .selected
            .as_ref()
            .is_some_and(|s| self.list.iter().any(|x| &x.name == s));
        if !keep {
            self.selected = self.list.first().map(|s| s.name.clone());
        }
    }

    /// The clock the jobs' times are told against: when they were read, in the local zone.
    fn clock(&self) -> Clock<'static> {
        Clock {
            now_ms: self.now_ms,
            local: &job_words::local_time,
        }
    }

    fn index(&self) -> Option<usize> {
        let sel = self.selected.as_ref()?;
        self.list.iter().position(|s| &s.name == sel)
    }

    fn current(&self) -> Option<&ServiceStatus> {
        self.index().map(|i| &self.list[i])
    }

    fn move_by(&mut self, d: isize) {
        if self.list.is_empty() {
            return;
        }
        let i = self.index().unwrap_or(0) as isize;
        let n = self.list.len() as isize;
        let j = (i + d).clamp(0, n - 1) as usize;
        self.selected = Some(self.list[j].name.clone());
    }

    fn sample(&mut self) {
        for s in &self.list {
            let h = self.fds.entry(s.name.clone()).or_default();
            if let Some(f) = &s.fds {
                h.push_back(f.count);
                if h.len() > HISTORY {
                    h.pop_front();
                }
            }
        }
        self.fds
            .retain(|n, _| self.list.iter().any(|s| &s.name == n));
    }
}

async fn refresh(client: &Client, app: &mut App, log_lines: usize) {
    let list = client
        .json::<Vec<ServiceStatus>>("GET", "/v1/services")
        .await;
    let info = client.json::<DaemonInfo>("GET", "/v1/daemon").await;
    // A daemon without jobs (or before them) answers an error: no job rows then.
    let jobs = client.json::<candor_api::Jobs>("GET", "/v1/jobs").await;
    app.jobs = jobs
        .map(|j| j.jobs.into_iter().map(|j| (j.name.clone(), j)).collect())
        .unwrap_or_default();
    app.now_ms = Clock::system(|c| c.now_ms);
    match (list, info) {
        (Ok(list), Ok(info)) => {
            app.list = list;
            app.info = Some(info);
            app.unreachable = None;
            app.sort();
        }
        (Err(e), _) | (_, Err(e)) => app.unreachable = Some(e.to_string()),
    }
    app.logs = match &app.selected {
        Some(name) => client
            .json::<Vec<LogEntry>>(
                "GET",
                &format!("/v1/services/{}/logs?n={log_lines}", encode(name)),
            )
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
}

async fn act(client: &Client, action: Action, name: &str) -> (bool, String) {
    let path = match action {
        Action::ResetFailed => "/v1/reset-failed".to_string(),
        a => format!("/v1/services/{}/{}", encode(name), a.verb()),
    };
    match client.call("POST", &path).await {
        Ok(_) if action == Action::ResetFailed => {
            (true, "reset-failed: failed services restarted".into())
        }
        Ok(_) => (true, format!("{}: {} requested", name, action.verb())),
        Err(e) => (false, format!("{} {}: {e}", action.verb(), name)),
    }
}

/// Run the view until `q` / ctrl-c. In `Mode::Up`, quitting asks the daemon to shut down.
/// `ended` (for `candor up`) says the daemon has stopped by itself: the view restores the
/// terminal and returns.
/// `reach` (for `candor up`): how to reach the daemon from another terminal, shown under the
/// header.
pub async fn run(
    client: Client,
    mode: Mode,
    ended: Option<Arc<Notify>>,
    reach: Option<String>,
) -> u8 {
    let ended = ended.unwrap_or_default();
    let mut gone = false;
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("candor: cannot use this terminal: {e}");
            return crate::FAILED;
        }
    };
    // Keys come from a thread of their own (crossterm's read blocks).
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<Event>(64);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if event::poll(Duration::from_millis(100)).unwrap_or(false) {
                    match event::read() {
                        Ok(ev) => {
                            if keys_tx.blocking_send(ev).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            }
        })
    };
    // Anything the daemon records (a state change, a request) redraws at once.
    let changed = Arc::new(Notify::new());
    let follower = {
        let (client, changed) = (client.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let _ = client
                    .follow("/v1/events?follow=true&n=0", |_| changed.notify_one())
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut app = App {
        reach,
        ..App::default()
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut log_lines = 20;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                refresh(&client, &mut app, log_lines).await;
                app.sample();
            }
            _ = changed.notified() => refresh(&client, &mut app, log_lines).await,
            _ = ended.notified() => {
                gone = true;
                break;
            }
            ev = keys.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        match key(&mut app, k) {
                            Step::Quit => break,
                            Step::Act(a, name) => {
                                app.message = Some(act(&client, a, &name).await);
                                refresh(&client, &mut app, log_lines).await;
                            }
                            Step::Select => refresh(&client, &mut app, log_lines).await,
                            Step::Redraw => {}
                        }
                    }
                    Event::Resize(..) => {}
                    _ => continue,
                }
            }
        }
        let mut pane = 0;
        if terminal.draw(|f| pane = draw(f, &app, mode)).is_err() {
            break;
        }
        log_lines = pane.max(1);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    follower.abort();
    ratatui::restore();
    let _ = reader.join();
    if mode == Mode::Up && !gone {
        println!("candor: stopping every service, then exiting");
        if let Err(e) = client.call("POST", "/v1/shutdown").await {
            eprintln!("candor: {e}");
        }
    }
    crate::OK
}

enum Step {
    Quit,
    Act(Action, String),
    Select,
    Redraw,
}

fn key(app: &mut App, k: KeyEvent) -> Step {
    if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
        return Step::Quit;
    }
    if let Some((action, name)) = app.confirm.take() {
        return match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Step::Act(action, name),
            _ => {
                app.message = Some((true, format!("{} {name}: cancelled", action.verb())));
                Step::Redraw
            }
        };
    }
    if app.help {
        app.help = false;
        return Step::Redraw;
    }
    let ask = |app: &mut App, a: Action| {
        if let Some(name) = app.selected.clone() {
            app.confirm = Some((a, name));
        }
        Step::Redraw
    };
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => Step::Quit,
        KeyCode::Char('?') | KeyCode::Char('h') => {
            app.help = true;
            Step::Redraw
        }
        KeyCode::Up | KeyCode::Char('k') => {
            app.move_by(-1);
            Step::Select
        }
        KeyCode::Down | KeyCode::Char('j') => {
            app.move_by(1);
            Step::Select
        }
        KeyCode::PageUp => {
            app.move_by(-10);
            Step::Select
        }
        KeyCode::PageDown => {
            app.move_by(10);
            Step::Select
        }
        KeyCode::Char('s') => ask(app, Action::Start),
        KeyCode::Char('x') => ask(app, Action::Stop),
        KeyCode::Char('r') => ask(app, Action::Restart),
        KeyCode::Char('f') => ask(app, Action::ResetFailed),
        _ => Step::Redraw,
    }
}

const KEYS: &str = "↑/↓ select  s start  x stop  r restart  f reset-failed  ? help  q quit";

/// Draw the whole view; returns how many log lines fit in the log pane.
fn draw(f: &mut Frame, app: &App, mode: Mode) -> usize {
    let area = f.area();
    // The board's shared causes and held restarts, under the daemon's two lines (at most
    // four, so the table keeps its room).
    let causes: Vec<Line> = crate::render::causes(&app.list)
        .lines()
        .take(4)
        .map(|l| {
            Line::styled(
                short(l, area.width as usize),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            )
        })
        .collect();
    let reach: Option<Line> = app
        .reach
        .as_ref()
        .map(|r| Line::styled(short(r, area.width as usize), Style::new().fg(Color::Cyan)));
    let rows = Layout::vertical([
        Constraint::Length(2 + reach.iter().len() as u16 + causes.len() as u16),
        Constraint::Min(4),
        Constraint::Length(6),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .split(area);

    // Header: the daemon, or why it cannot be reached.
    let header = match (&app.unreachable, &app.info) {
        (Some(e), _) => vec![Line::styled(
            short(e, area.width as usize),
            Style::new().fg(Color::Red),
        )],
        (None, Some(info)) => crate::render::header(info)
            .lines()
            .take(2)
            .map(|l| Line::raw(l.to_string()))
            .collect(),
        (None, None) => vec![Line::raw("connecting to the daemon…")],
    };
    let header: Vec<Line> = header.into_iter().chain(reach).chain(causes).collect();
    f.render_widget(Paragraph::new(header), rows[0]);

    // The table, sorted by trouble, each group's instances indented under it and, under a
    // group's reason, its rollout instance by instance (or why it halted). A reason too long
    // for its column keeps, at its end, the words saying the restart is held.
    let widths = [16, 10, 8, 8, 11];
    let reason_width = (area.width as usize)
        .saturating_sub(widths.iter().sum::<u16>() as usize + widths.len())
        .max(10);
    let placed = crate::render::groups::arrange(&app.list, |_, _| std::cmp::Ordering::Equal);
    let table_rows: Vec<Row> = placed
        .iter()
        .map(|placed| {
            let s = placed.service;
            let fds = s
                .fds
                .as_ref()
                .map(|x| format!("{}/{}", x.count, x.limit))
                .unwrap_or_else(|| "-".into());
            let reason = match app.jobs.get(&s.name) {
                Some(job) => short(&job_words::summary(job, &app.clock()), reason_width),
                None => crate::render::cut_reason(s, reason_width),
            };
            let rollout = crate::render::groups::rollout_line(s);
            let height = 1 + u16::from(rollout.is_some());
            let reason = match rollout {
                Some(r) => Text::from(vec![
                    Line::raw(reason),
                    Line::styled(short(&r, reason_width), Style::new().fg(colour(&s.state))),
                ]),
                None => Text::raw(reason),
            };
            Row::new(vec![
                Cell::from(placed.name()),
                Cell::from(Span::styled(
                    s.state.clone(),
                    Style::new()
                        .fg(colour(&s.state))
                        .add_modifier(Modifier::BOLD),
                )),
                Cell::from(s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
                Cell::from(s.restarts.to_string()),
                Cell::from(fds),
                Cell::from(reason),
            ])
            .height(height)
        })
        .collect();
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(widths[0]),
            Constraint::Length(widths[1]),
            Constraint::Length(widths[2]),
            Constraint::Length(widths[3]),
            Constraint::Length(widths[4]),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(["NAME", "STATE", "PID", "RESTARTS", "FDS", "REASON"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(
        Block::new()
            .borders(Borders::TOP)
            .title(format!(" {} services ", app.list.len())),
    );
    let mut state = TableState::default().with_selected(app.index());
    f.render_stateful_widget(table, rows[1], &mut state);

    // The selected service: its reason, and its fds against the limit.
    let detail =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).split(rows[2]);
    if let Some(s) = app.current() {
        let mut text = vec![Line::from(vec![
            Span::styled(
                format!("{} ", s.name),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(s.state.clone(), Style::new().fg(colour(&s.state))),
            Span::styled(
                s.restart_held
                    .as_ref()
                    .map(|h| format!(" · restart held ({h})"))
                    .unwrap_or_default(),
                Style::new().fg(Color::Yellow),
            ),
        ])];
        // Before the reason, which may be cut by the pane.
        if let Some(c) = &s.shared_cause {
            text.push(Line::styled(
                format!(
                    "shared cause: probes of {} fail for {} services since {}",
                    c.target, c.services, c.since
                ),
                Style::new().fg(Color::Yellow),
            ));
        }
        text.push(Line::raw(s.reason.clone()));
        if let Some(r) = &s.replicas {
            text.push(Line::raw(format!(
                "replicas: {} of {} running · {}, generation {}",
                r.running, r.wanted, r.strategy, r.generation
            )));
        }
        if let Some(p) = s.probes.first() {
            text.push(Line::raw(format!(
                "probe: {} {} ({}) {} ms",
                p.kind,
                if p.ok { "ok" } else { "FAILED" },
                p.detail,
                p.latency_ms
            )));
        }
        if let Some(t) = &s.status_text {
            text.push(Line::raw(format!("its status: {t}")));
        }
        if let Some(job) = app.jobs.get(&s.name) {
            let clock = app.clock();
            let schedule = job.schedule.as_deref().unwrap_or("no schedule");
            text.push(Line::raw(format!(
                "job: {schedule} · next {}",
                job_words::next(job.next_ms, &clock),
            )));
            text.push(Line::raw(format!(
                "last {} · runs: {}",
                job_words::last(job, &clock),
                job_words::counts(&job.counts)
            )));
        }

        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: true })
                .block(Block::new().borders(Borders::TOP).title(" selected ")),
            detail[0],
        );
        let hist: Vec<u64> = app
            .fds
            .get(&s.name)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let title = match &s.fds {
            Some(x) => {
                let trend = match (x.per_hour, x.eta_s) {
                    (Some(r), Some(eta)) if r > 0.0 => {
                        format!(
                            " +{r}/h, at the limit in {}",
                            crate::render::uptime(Some(eta))
                        )
                    }
                    (Some(r), _) => format!(" {r:+}/h"),
                    _ => String::new(),
                };
                format!(" fds {}/{} ({} %){trend} ", x.count, x.limit, x.pct)
            }
            None => " fds: no sample ".into(),
        };
        let limit = s.fds.as_ref().map(|x| x.limit).unwrap_or(0);
        let spark_width = detail[1].width.saturating_sub(2) as usize;
        let shown = &hist[hist.len().saturating_sub(spark_width)..];
        f.render_widget(
            Sparkline::default()
                .data(shown)
                .max(limit.max(1))
                .style(Style::new().fg(Color::Yellow))
                .block(Block::new().borders(Borders::TOP).title(title)),
            detail[1],
        );
    }

    // Its log tail.
    let pane = rows[3].height.saturating_sub(1) as usize;
    let lines: Vec<Line> = app
        .logs
        .iter()
        .rev()
        .take(pane)
        .rev()
        .map(|l| {
            let style = match l.stream.as_str() {
                "stderr" => Style::new().fg(Color::Red),
                "candor" => Style::new().fg(Color::Cyan),
                _ => Style::new(),
            };
            Line::styled(
                format!("{} {}", l.at.get(11..19).unwrap_or(&l.at), l.line),
                style,
            )
        })
        .collect();
    let title = match &app.selected {
        Some(n) => format!(" logs of {n} "),
        None => " logs ".into(),
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::TOP).title(title)),
        rows[3],
    );

    // The bottom line: a question, the last outcome, or the keys.
    let bottom = match (&app.confirm, &app.message) {
        (Some((a, n)), _) => Line::styled(
            format!("{} {n}? y/n", a.verb()),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        (None, Some((ok, m))) => Line::styled(
            m.clone(),
            Style::new().fg(if *ok { Color::Green } else { Color::Red }),
        ),
        _ => Line::raw(match mode {
            Mode::Top => KEYS.to_string(),
            Mode::Up => format!("{KEYS} (q stops every service)"),
        }),
    };
    f.render_widget(Paragraph::new(bottom), rows[4]);

    if app.help {
        help(f, area, mode);
    }
    pane
}

fn help(f: &mut Frame, area: Rect, mode: Mode) {
    let w = 56.min(area.width);
    let h = 14.min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let quit = match mode {
        Mode::Top => "q Esc ctrl-c   quit (the daemon goes on)",
        Mode::Up => "q Esc ctrl-c   stop every service and exit",
    };
    let text = vec![
        Line::raw("↑ ↓ j k        select a service"),
        Line::raw("PgUp PgDn      move by ten"),
        Line::raw("s              start it"),
        Line::raw("x              stop it"),
        Line::raw("r              restart it"),
        Line::raw("f              reset-failed: restart failed services"),
        Line::raw("y / Enter      confirm; any other key cancels"),
        Line::raw("?              this help"),
        Line::raw(quit),
        Line::raw(""),
        Line::raw("Sorted by trouble: failed, unhealthy, degraded, …"),
        Line::raw("any key closes this"),
    ];
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" candor top: keys ")),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, state: &str) -> ServiceStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "state": state, "reason": "r", "since": "t", "pid": null,
            "uptime_s": null, "restarts": 0, "last_exit": null, "ready": null, "probes": [],
            "sockets": [], "fds": null, "rss_bytes": null,
            "logs": {"lines": 0, "dropped": 0}, "runs": 0, "next_start": null, "status_text": null
        }))
        .unwrap()
    }

    /// The screen `draw` makes of `app` in a terminal of this size, one string a row.
    fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
        let mut t =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
        t.draw(|f| {
            draw(f, app, Mode::Top);
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn a_shared_cause_shows_in_the_header_and_held_restarts_in_the_table() {
        let held = |name: &str, since: &str| {
            let mut s = svc(name, "unhealthy");
            s.reason = "http probe failed 3 times in a row: timed out after 1s — shared with 2 services probing 127.0.0.1:8000 for 40s; restart held until it recovers".into();
            s.shared_cause = Some(candor_api::SharedCause {
                target: "127.0.0.1:8000".into(),
                services: 2,
                since: since.into(),
            });
            s.restart_held = Some("shared cause".into());
            s
        };
        let mut app = App {
            list: vec![
                held("api", "2026-12-07T14:02:30Z"),
                held("web", "2026-12-07T14:02:11Z"),
                svc("calm", "running"),
            ],
            ..Default::default()
        };
        app.sort();
        let rows = screen(&app, 120, 30);
        let all = rows.join("\n");
        // In the header, above the table.
        let cause = rows.iter().position(|r| {
            r.starts_with("shared cause: 2 services failing probes of 127.0.0.1:8000 since 14:02:11 UTC; their restarts are held until it recovers")
        });
        let table = rows.iter().position(|r| r.starts_with("NAME "));
        assert!(cause.is_some() && cause < table, "{all}");
        let api = rows.iter().find(|r| r.starts_with("api ")).expect(&all);
        assert!(
            api.trim_end().ends_with("… shared cause; restart held"),
            "{all}"
        );
        // The selected one (api, first by trouble) says it beside its state.
        assert!(
            rows.iter()
                .any(|r| r.starts_with("api unhealthy · restart held (shared cause)")),
            "{all}"
        );

        // Nothing shared: the header is the daemon's two lines, no cause line.
        let calm = App {
            list: vec![svc("calm", "running")],
            ..Default::default()
        };
        assert!(!screen(&calm, 120, 30).join("\n").contains("shared cause"));
    }

    #[test]
    fn a_group_shows_its_instances_under_it_and_its_rollout_instance_by_instance() {
        use candor_api::{Replicas, Rollout, RolloutInstance};
        let at = |name: &str, generation, state: &str| RolloutInstance {
            name: name.into(),
            generation,
            state: state.into(),
            spare: false,
        };
        let mut api = svc("api", "starting");
        api.reason = "rolling update: 1 of 3 updated (api@2 starting)".into();
        api.replicas = Some(Replicas {
            wanted: 3,
            configured: 3,
            running: 2,
            instances: vec!["api@1".into(), "api@2".into(), "api@3".into()],
            strategy: "rolling".into(),
            generation: 2,
            rollout: Some(Rollout {
                service: "api".into(),
                state: "rolling".into(),
                strategy: "rolling".into(),
                from_generation: 1,
                to_generation: 2,
                why: "env.VERSION changed".into(),
                updated: 1,
                total: 3,
                started: "2026-12-07T14:01:00Z".into(),
                halted: None,
                instances: vec![
                    at("api@1", 2, "running"),
                    at("api@2", 2, "starting"),
                    at("api@3", 1, "running"),
                ],
            }),
        });
        let instance = |name: &str, state: &str| {
            let mut s = svc(name, state);
            s.group = Some("api".into());
            s
        };
        let mut app = App {
            // As the daemon lists them: by name, so api@10 would come before api@2.
            list: vec![
                svc("db", "failed"),
                instance("api@3", "running"),
                instance("api@1", "running"),
                api,
                instance("api@2", "starting"),
            ],
            ..Default::default()
        };
        app.sort();
        let names: Vec<&str> = app.list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "api", "api@1", "api@2", "api@3"]);
        let rows = screen(&app, 120, 30);
        let all = rows.join("\n");
        let group = rows.iter().position(|r| r.starts_with("api ")).expect(&all);
        assert!(
            rows[group].contains("rolling update: 1 of 3 updated (api@2 starting)"),
            "{all}"
        );
        assert!(
            rows[group + 1]
                .trim()
                .starts_with("api@1 g2 running · api@2 g2 starting · api@3 g1 running"),
            "the rollout under the group's reason:\n{all}"
        );
        for (i, name) in ["api@1", "api@2", "api@3"].iter().enumerate() {
            assert!(
                rows[group + 2 + i].starts_with(&format!("  {name} ")),
                "{all}"
            );
        }

        // Halted: the reason it halted, under the group.
        let halted = "rollout halted at api@2: new run exited with code 1 before ready";
        let group_row = app.list.iter_mut().find(|s| s.name == "api").unwrap();
        group_row.state = "degraded".into();
        if let Some(r) = group_row.replicas.as_mut().and_then(|r| r.rollout.as_mut()) {
            r.state = "halted".into();
            r.halted = Some(halted.into());
        }
        app.sort();
        let rows = screen(&app, 120, 30);
        let all = rows.join("\n");
        let group = rows.iter().position(|r| r.starts_with("api ")).expect(&all);
        // Cut to the reason's column, like the reason above it.
        assert!(
            rows[group + 1]
                .trim()
                .starts_with(&halted[..halted.len() - 10]),
            "{all}"
        );
        assert!(rows[group + 2].starts_with("  api@1 "), "{all}");

        // A group whose reason is the halt's sentence: not said twice; the instances instead.
        let group_row = app.list.iter_mut().find(|s| s.name == "api").unwrap();
        group_row.reason = halted.into();
        let rows = screen(&app, 120, 30);
        let all = rows.join("\n");
        let group = rows.iter().position(|r| r.starts_with("api ")).expect(&all);
        assert!(
            rows[group + 1]
                .trim()
                .starts_with("halted: api@1 g2 running · api@2 g2 starting · api@3"),
            "{all}"
        );
    }

    #[test]
    fn trouble_comes_first_and_the_selection_follows_its_service() {
        let mut app = App {
            list: vec![
                svc("a", "running"),
                svc("b", "failed"),
                svc("c", "degraded"),
            ],
            selected: Some("a".into()),
            ..Default::default()
        };
        app.sort();
        let names: Vec<&str> = app.list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert_eq!(app.index(), Some(2), "still on a");
        app.move_by(-1);
        assert_eq!(app.selected.as_deref(), Some("c"));
        app.move_by(-10);
        assert_eq!(app.selected.as_deref(), Some("b"));
    }

    #[test]
    fn a_job_row_says_its_last_result_and_next_run_and_a_finished_job_is_no_trouble() {
        let now_ms = 1_796_652_120_000;
        let done = candor_api::JobRun {
            run: 4,
            trigger: "schedule".into(),
            started_ms: now_ms - 120_000,
            ended_ms: Some(now_ms - 116_800),
            duration_ms: Some(3200),
            result: "done".into(),
            code: Some(0),
            reason: "completed in 3.2s with exit 0".into(),
            ..Default::default()
        };
        let job = Job {
            name: "backup".into(),
            kind: "oneshot".into(),
            state: "done".into(),
            reason: "completed in 3.2s with exit 0".into(),
            schedule: Some("every 1h".into()),
            next_ms: Some(now_ms + 3_600_000),
            last: Some(done.clone()),
            last_success_ms: done.ended_ms,
            counts: candor_api::JobCounts {
                done: 4,
                failed: 1,
                skipped: 0,
            },
            history: vec![done],
        };
        let mut backup = svc("backup", "done");
        backup.reason = job.reason.clone();
        let mut app = App {
            list: vec![backup, svc("web", "running"), svc("db", "failed")],
            jobs: [("backup".to_string(), job)].into(),
            now_ms,
            selected: Some("backup".into()),
            ..Default::default()
        };
        app.sort();
        let names: Vec<&str> = app.list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["db", "backup", "web"],
            "failed first; done with running"
        );
        let rows = screen(&app, 140, 30);
        let all = rows.join("\n");
        let row = rows.iter().find(|r| r.starts_with("backup ")).expect(&all);
        assert!(row.contains(" done "), "{all}");
        assert!(
            row.contains("last: done 3.2s, 1m ago · next in 1h ("),
            "the reason column says the last run and the next:\n{all}"
        );
        assert!(
            rows.iter()
                .any(|r| r.starts_with("job: every 1h · next in 1h ("))
                && rows
                    .iter()
                    .any(|r| r
                        .starts_with("last done 3.2s, 1m ago · runs: 4 done, 1 failed, 0 skipped")),
            "the selected job's line:\n{all}"
        );
        // A service that is not a job keeps its reason.
        let web = rows.iter().find(|r| r.starts_with("web ")).expect(&all);
        assert!(web.trim_end().ends_with(" r"), "{all}");
        assert_eq!(colour("done"), Color::Green);
        assert_eq!(colour("skipped"), Color::DarkGray);
        assert_eq!(colour("a state from a newer daemon"), Color::Gray);
    }

    /// The help box as drawn over an empty view, one string a row, borders cut off.
    fn help_box(mode: Mode) -> Vec<String> {
        let (width, height) = (80, 24);
        let mut t =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
        t.draw(|f| {
            let area = f.area();
            help(f, area, mode);
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .filter_map(|row| {
                let inside = row.trim().strip_prefix('│')?.strip_suffix('│')?;
                Some(inside.trim_end().to_string())
            })
            .collect()
    }

    #[test]
    fn every_key_of_the_help_box_has_its_meaning_in_one_column() {
        for mode in [Mode::Top, Mode::Up] {
            let rows = help_box(mode);
            // A key line: the keys, two spaces or more, what they do.
            let columns: Vec<(usize, &String)> = rows
                .iter()
                .filter_map(|row| {
                    let chars: Vec<char> = row.chars().collect();
                    let gap = (1..chars.len()).find(|&i| chars[i] == ' ' && chars[i - 1] == ' ')?;
                    let meaning = (gap..chars.len()).find(|&i| chars[i] != ' ')?;
                    Some((meaning, row))
                })
                .collect();
            assert_eq!(columns.len(), 9, "{rows:#?}");
            let first = columns[0].0;
            for (column, row) in &columns {
                assert_eq!(*column, first, "shifted: {row:?}\n{rows:#?}");
            }
        }
    }

    #[test]
    fn up_shows_how_to_reach_its_daemon_under_the_header() {
        let app = App {
            list: vec![svc("web", "running")],
            reach: Some("from another terminal: export CANDOR_SOCKET=/srv/x/candor.sock".into()),
            ..Default::default()
        };
        let rows = screen(&app, 120, 30);
        let reach = rows.iter().position(|r| {
            r.starts_with("from another terminal: export CANDOR_SOCKET=/srv/x/candor.sock")
        });
        let table = rows.iter().position(|r| r.starts_with("NAME "));
        assert!(reach.is_some() && reach < table, "{}", rows.join("\n"));
    }
}
