() => {
  // The live view and the grid's thumbnails of ui/page.py, run once when the page loads
  // (Blocks.launch(js=...)).
  //
  // Live view: one short request at a time, never an endless one: GET live/TOKEN.jpg?after=SEQ
  // answers with the watched stream's newest annotated frame once its sequence number is above
  // SEQ, or with 204 after about half a second. An endless multipart/x-mixed-replace response
  // per tab held one of the browser's six HTTP/1.1 connections to the server for good; with
  // Gradio's own heartbeat stream per tab, three tabs filled all six and the third never got a
  // prediction. TOKEN is the data-token of <img id="live-img">; watching another stream brings
  // a new <img> with a new token, picked up on the next round.
  //
  // Thumbnails: every <img class="thumb" data-token=...> of the grid, one short request each
  // about once a second (thumb/TOKEN.jpg?after=SEQ: 200 with a newer one, else 204 at once).
  // The grid's HTML is replaced at every refresh, which makes new <img> elements: each gets its
  // stream's current picture as soon as it is added (a MutationObserver, before the browser
  // paints), from an object URL it has shown already, so the grid does not blink.
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const revoke = (url) => {
    if (url !== null) URL.revokeObjectURL(url);
  };

  // ---- the live view ----
  let token = null;
  let seq = 0;
  let shownUrl = null;  // the object URL on screen: revoked once the next one is decoded
  const show = (img, blob) => {
    // Not awaited: the next request goes out while this frame decodes.
    const previous = shownUrl;
    shownUrl = URL.createObjectURL(blob);
    img.src = shownUrl;
    img.decode().catch(() => {}).finally(() => revoke(previous));
  };
  const fetchOne = async (img) => {
    const reply = await fetch(`live/${token}.jpg?after=${seq}`,
                              {cache: "no-store", signal: AbortSignal.timeout(10000)});
    if (reply.status === 204) return 0;      // no new frame yet: ask again at once
    if (reply.status !== 200) return 1000;   // stream closed (404), logged out (401): back off
    const next = Number(reply.headers.get("X-Frame-Seq"));
    show(img, await reply.blob());
    if (Number.isFinite(next)) seq = next;
    return 0;
  };
  const liveLoop = async () => {
    for (;;) {
      const img = document.getElementById("live-img");
      const current = img ? img.dataset.token : undefined;
      if (!current || document.hidden) {  // not loaded yet, or a tab nobody looks at
        await sleep(200);
        continue;
      }
      if (current !== token) {
        token = current;
        seq = 0;
      }
      let pause;
      try {
        pause = await fetchOne(img);
      } catch (err) {
        pause = 1000;  // server gone or restarting, or no answer within 10 s
      }
      if (pause > 0) await sleep(pause);
    }
  };

  // ---- the grid's thumbnails ----
  const thumbs = new Map();  // token -> {seq, url}
  const paint = (img) => {
    const got = thumbs.get(img.dataset.token);
    if (got && img.getAttribute("src") !== got.url) img.src = got.url;
  };
  const paintAll = () => document.querySelectorAll("img.thumb[data-token]").forEach(paint);
  new MutationObserver(paintAll).observe(document.body, {childList: true, subtree: true});
  const fetchThumb = async (tok) => {
    const got = thumbs.get(tok) || {seq: 0, url: null};
    const reply = await fetch(`thumb/${tok}.jpg?after=${got.seq}`,
                              {cache: "no-store", signal: AbortSignal.timeout(10000)});
    if (reply.status !== 200) return;
    const url = URL.createObjectURL(await reply.blob());
    const previous = got.url;
    thumbs.set(tok, {seq: Number(reply.headers.get("X-Frame-Seq")) || got.seq + 1, url});
    paintAll();
    // Revoked once the new picture is decoded: until then the old one stays on screen.
    const probe = new Image();
    probe.src = url;
    probe.decode().catch(() => {}).finally(() => revoke(previous));
  };
  const thumbLoop = async () => {
    for (;;) {
      const tokens = new Set();
      document.querySelectorAll("img.thumb[data-token]").forEach((img) => tokens.add(img.dataset.token));
      for (const [tok, got] of thumbs) {  // a stream that left the grid: forget its picture
        if (!tokens.has(tok)) {
          URL.revokeObjectURL(got.url);
          thumbs.delete(tok);
        }
      }
      if (!document.hidden) {
        for (const tok of tokens) {
          try {
            await fetchThumb(tok);
          } catch (err) {
            // server gone or restarting: the next round asks again
          }
        }
      }
      await sleep(1000);
    }
  };
  liveLoop();  // not awaited: Gradio awaits this function's result before it goes on
  thumbLoop();
}
