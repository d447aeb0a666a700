// A dedicated worker for the tests: {ticket?, url} -> joins with the ticket (if any), then
// answers the status of a GET of url.
onmessage = async (e) => {
  if (e.data.ticket) await fetch(e.data.ticket);
  const resp = await fetch(e.data.url, { cache: 'no-store' });
  postMessage(resp.status);
};
