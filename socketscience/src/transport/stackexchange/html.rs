//! Reading what Stack Exchange chat serves as HTML: the fkey and user of a
//! page, and the source text of a message from its rendered content.

use scraper::{ElementRef, Html, Node, Selector};

/// The hidden `fkey` input of a page, if it has one (a page without it
/// means the site is down or read-only).
pub(crate) fn fkey(page: &str) -> Option<String> {
    let document = Html::parse_document(page);
    let selector = Selector::parse(r#"input[name="fkey"]"#).ok()?;
    document
        .select(&selector)
        .filter_map(|input| input.attr("value"))
        .map(str::trim)
        .find(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The logged-in user of a chat page: the `/users/<id>` link in the top
/// bar's `.topbar-menu-links`, the only place that says who is logged in
/// (ChatExchange, sochat4j and SmokeDetector read only it). `None` when the
/// top bar has no user link (it says "log in"): nobody is logged in, even
/// if the page links to users elsewhere (the chat's pages list recently
/// active users).
pub(crate) fn current_user(page: &str) -> Option<(u64, String)> {
    let document = Html::parse_document(page);
    let selector = Selector::parse(".topbar-menu-links a[href]").ok()?;
    document.select(&selector).find_map(|link| {
        let id = link.attr("href").and_then(user_id_from_href)?;
        let name = link.text().collect::<String>().trim().to_owned();
        Some((id, name))
    })
}

/// The id in a `/users/<id>[/slug]` link (absolute or relative).
fn user_id_from_href(href: &str) -> Option<u64> {
    let path = href
        .split_once("://")
        .map_or(href, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if segments.next()? != "users" {
        return None;
    }
    let id = segments.next()?;
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// A message's `content`, as events carry it, read back as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// The whole message source.
    Text(String),
    /// The message was cut (`<div class='partial'>`): fetch its source.
    Partial,
}

/// Turns rendered message content back into the message source.
///
/// Multi-line messages come as `<div class='full'>line <br> line</div>`
/// (entities escaped): the wrapper is dropped, each `<br>` becomes a
/// newline (with the single spaces the chat puts around it), entities are
/// unescaped. Single-line messages are escaped text (Markdown rendered for
/// humans; frames are never single-line here). Other markup keeps its text.
pub(crate) fn content_to_text(content: &str) -> Content {
    let fragment = Html::parse_fragment(content);
    let root = fragment.root_element();
    let mut elements = root.children().filter_map(ElementRef::wrap);
    if let Some(first) = elements.next() {
        let wrapped = matches!(first.value().name(), "div" | "pre");
        if wrapped && first.value().classes().any(|c| c == "partial") {
            return Content::Partial;
        }
    }
    let mut out = String::with_capacity(content.len());
    let mut after_break = false;
    collect_text(root, &mut out, &mut after_break);
    Content::Text(out)
}

fn collect_text(element: ElementRef<'_>, out: &mut String, after_break: &mut bool) {
    for child in element.children() {
        match child.value() {
            Node::Text(text) => {
                let mut text: &str = text;
                if *after_break {
                    text = text.strip_prefix(' ').unwrap_or(text);
                    *after_break = text.is_empty();
                }
                out.push_str(text);
            }
            Node::Element(e) if e.name() == "br" => {
                if out.ends_with(' ') {
                    out.pop();
                }
                out.push('\n');
                *after_break = true;
            }
            Node::Element(_) => {
                if let Some(child) = ElementRef::wrap(child) {
                    collect_text(child, out, after_break);
                }
            }
            _ => {}
        }
    }
}

/// The seconds in a throttle answer: `You can perform this action again in
/// N seconds`.
pub(crate) fn throttle_seconds(body: &str) -> Option<u64> {
    let rest = body.split_once("again in")?.1.trim_start();
    let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    let rest = rest[digits.len()..].trim_start();
    rest.starts_with("second").then(|| digits.parse().ok())?
}

/// How long a room "in timeout" stays so, from the chat's 404 text ("The
/// room is in timeout, ending in 58 seconds", as sochat4j quotes it):
/// `Some(None)` when it does not say how long, `None` when the text is not
/// about a room timeout (a ban, "Your account is blocked, ending in 5
/// hours", or a room that does not exist, is not).
pub(crate) fn room_timeout(text: &str) -> Option<Option<std::time::Duration>> {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("room is in timeout") {
        return None;
    }
    let Some(rest) = lower
        .split_once("ending in")
        .map(|(_, rest)| rest.trim_start())
    else {
        return Some(None);
    };
    let count = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(n) = rest[..count.min(9)].parse::<u64>() else {
        return Some(None);
    };
    let unit = rest[count..].trim_start();
    let seconds = if unit.starts_with("second") {
        n
    } else if unit.starts_with("minute") {
        n * 60
    } else if unit.starts_with("hour") {
        n * 3600
    } else if unit.starts_with("day") {
        n * 86_400
    } else {
        return Some(None);
    };
    Some(Some(std::time::Duration::from_secs(seconds)))
}

/// The readable text of an error page or plain-text answer, shortened for
/// an error message.
pub(crate) fn error_text(body: &str) -> String {
    let text = if body.trim_start().starts_with('<') {
        let document = Html::parse_document(body);
        let text: String = document.root_element().text().collect();
        text
    } else {
        body.to_owned()
    };
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fkey_and_user_from_a_chat_page() {
        let page = r#"<html><body>
            <div id="topbar"><div class="topbar-menu-links">
              <a href="/users/120914/smokedetector" title="SmokeDetector">SmokeDetector</a>
              <a href="/rooms">rooms</a></div></div>
            <form><input id="fkey" name="fkey" type="hidden" value="0123abcd" /></form>
            </body></html>"#;
        assert_eq!(fkey(page).as_deref(), Some("0123abcd"));
        assert_eq!(current_user(page), Some((120914, "SmokeDetector".into())));
    }

    #[test]
    fn read_only_and_anonymous_pages() {
        assert_eq!(fkey("<html><body>down for maintenance</body></html>"), None);
        let anonymous = r#"<div class="topbar-menu-links"><a href="/users/login">log in</a></div>
            <input name="fkey" value="f">"#;
        assert_eq!(current_user(anonymous), None);
        // Logged out, with users listed outside the top bar.
        let listing = r#"<div id="topbar"><div class="topbar-menu-links">
            <a href="/users/login">log in</a></div></div>
            <div id="sidebar"><a href="/users/666/a-regular">a regular</a></div>
            <div id="active-user"><a href="/users/7/x">x</a></div>
            <input name="fkey" value="f">"#;
        assert_eq!(current_user(listing), None);
        assert_eq!(current_user(r#"<a href="/users/666/a">a</a>"#), None);
        assert_eq!(
            user_id_from_href("https://chat.stackexchange.com/users/7/x"),
            Some(7)
        );
        assert_eq!(user_id_from_href("/users/-1"), None);
        assert_eq!(user_id_from_href("/rooms/users/3"), None);
    }

    #[test]
    fn multi_line_content_becomes_the_exact_source() {
        let content = "<div class='full'>. <br> \u{2}1234eyJiZXZlcmFnZSI6MX0=\u{3}</div>";
        assert_eq!(
            content_to_text(content),
            Content::Text(".\n\u{2}1234eyJiZXZlcmFnZSI6MX0=\u{3}".into())
        );
        // Without the spaces, with XHTML breaks, with entities.
        let content =
            "<div class='full'>a &amp; b<br/>&lt;c&gt; &#39;d&#39; &quot;e&quot; &#x2F;&#2;</div>";
        assert_eq!(
            content_to_text(content),
            Content::Text("a & b\n<c> 'd' \"e\" /\u{2}".into())
        );
        // Blank lines survive.
        let content = "<div class='full'>a <br>  <br> b</div>";
        assert_eq!(content_to_text(content), Content::Text("a\n\nb".into()));
    }

    #[test]
    fn partial_content_asks_for_the_source() {
        let content = "<div class='partial'>. <br> \u{2}1234AAAA</div>";
        assert_eq!(content_to_text(content), Content::Partial);
        assert_eq!(
            content_to_text(r#"<div class="partial">x</div>"#),
            Content::Partial
        );
    }

    #[test]
    fn single_line_content_is_unescaped_text() {
        assert_eq!(
            content_to_text("hello <b>bots</b> &amp; humans"),
            Content::Text("hello bots & humans".into())
        );
        assert_eq!(content_to_text(""), Content::Text(String::new()));
        assert_eq!(content_to_text("<div"), Content::Text(String::new()));
    }

    #[test]
    fn throttle_answers() {
        assert_eq!(
            throttle_seconds("You can perform this action again in 3 seconds"),
            Some(3)
        );
        assert_eq!(
            throttle_seconds("You can perform this action again in 1 second."),
            Some(1)
        );
        assert_eq!(throttle_seconds("Slow down!"), None);
        assert_eq!(throttle_seconds("again in 99999999999 seconds"), None);
    }

    #[test]
    fn room_timeouts_but_not_bans() {
        use std::time::Duration;
        assert_eq!(
            room_timeout("The room is in timeout, ending in 58 seconds"),
            Some(Some(Duration::from_secs(58)))
        );
        assert_eq!(
            room_timeout("This room is in timeout, ending in 2 minutes."),
            Some(Some(Duration::from_secs(120)))
        );
        assert_eq!(room_timeout("The room is in timeout"), Some(None));
        assert_eq!(
            room_timeout("Your account is blocked, ending in 5 hours"),
            None
        );
        assert_eq!(
            room_timeout("The room does not exist, or you do not have permission"),
            None
        );
    }

    #[test]
    fn error_texts_are_short_and_readable() {
        assert_eq!(
            error_text("<html><body><p>The room does not exist.</p></body></html>"),
            "The room does not exist."
        );
        assert_eq!(error_text("  plain\n text "), "plain text");
        assert!(error_text(&"é".repeat(400)).len() <= 304);
    }
}
