import { registry } from "@web/core/registry";

/**
 * Live screens (issue 19): the server sends one bus notification per transaction that changed conversations
 * (an import batch, a colleague's reply, an assignment, a status change) to each user who may read them, and one
 * per transaction that changed an address's sync to its editors. This service turns them into events on the
 * web client's bus, which the open views (``live_views.js``) and the inbox menu counters follow.
 *
 * The notifications name records only; the views read what changed through the ORM, with the user's rights.
 *
 * On connecting, the bus replays what it holds since the last notification this browser saw (the last minute's
 * for a new one): those changes are older than the page's data, and a reload then would only race the user's
 * first clicks. As mail's own counters do, notifications up to the bus id the page read at start
 * (``init_messaging``) are left out.
 */
export const LIVE_CONVERSATIONS = "EPILOT_OUTLOOK:LIVE-CONVERSATIONS";
export const LIVE_ADDRESSES = "EPILOT_OUTLOOK:LIVE-ADDRESSES";

export const epilotOutlookLiveService = {
    dependencies: ["bus_service", "mail.store"],
    start(env, { bus_service, "mail.store": store }) {
        let pageBusId = 0;
        const ready = store?.isReady
            ? store.isReady.then(() => {
                  pageBusId = store.inbox?.counter_bus_id || 0;
              })
            : Promise.resolve();
        const isNew = async (id) => {
            await ready;
            return !id || id > pageBusId;
        };
        bus_service.subscribe("epilot_outlook/conversations", async (payload, { id }) => {
            if (await isNew(id)) {
                env.bus.trigger(LIVE_CONVERSATIONS, payload);
                // The inbox menu counters (navbar/inbox_menu_counters.js) refresh on this one.
                env.bus.trigger("EPILOT_OUTLOOK:UNREAD-CHANGED");
            }
        });
        bus_service.subscribe("epilot_outlook/addresses", async (payload, { id }) => {
            if (await isNew(id)) {
                env.bus.trigger(LIVE_ADDRESSES, payload);
            }
        });
        bus_service.start();
    },
};

registry.category("services").add("epilot_outlook_live", epilotOutlookLiveService);
